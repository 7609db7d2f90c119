"""Signed MQTT commands for visitor passes, sent by the platform on behalf of a resident.

- `pass/issue` {holder? | apartment?, visitor, kind, doors, valid_until, valid_from?, max_uses?, pin?}
  -> {"pass": {...without secret...}, "secret": "<PIN or QR token>"}
- `pass/revoke` {pass, apartment?} -> {"pass": {...}}

The issue result is the one place a secret leaves the box: the platform must deliver the PIN or
token to the resident. It travels only in that command's result (`cmd_result/<id>`: QoS 1, not
retained, not journaled — `command.executed` names the command, never its result), so it goes to
whoever may read the result topic, which the broker's ACL restricts to the platform. Events
(`visitor_pass.issued`) and every other result carry the pass without its secret.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from edge.commands import BadArgs, CommandRejected, CommandRouter
from edge.passes import PassNotFound
from rules.access.model import Id, Name
from rules.access.passes import MAX_DOORS, MAX_USES, Apartment, PassError, PassKind, PassOrder

if TYPE_CHECKING:
    from edge.access import AccessService

NAMES = ("pass/issue", "pass/revoke")
M = TypeVar("M", bound=BaseModel)


class PassIssueArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    holder: Id | None = None  # the resident holder the pass is issued for
    apartment: Apartment | None = None  # or every resident of an apartment
    visitor: Name
    kind: PassKind = PassKind.PIN
    doors: tuple[Id, ...] = Field(min_length=1, max_length=MAX_DOORS)
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime
    max_uses: int = Field(default=1, ge=1, le=MAX_USES)
    pin: str | None = Field(default=None, max_length=8, repr=False)

    def order(self) -> PassOrder:
        return PassOrder(
            visitor=self.visitor,
            kind=self.kind,
            doors=self.doors,
            valid_from=self.valid_from,
            valid_until=self.valid_until,
            max_uses=self.max_uses,
            pin=self.pin,
        )


class PassRevokeArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pass_: Id = Field(alias="pass")
    apartment: Apartment | None = None  # when given, the pass must be this apartment's


def register_pass_commands(router: CommandRouter, service: AccessService) -> None:
    async def issue(args: dict[str, Any]) -> dict[str, Any]:
        parsed = _parse(PassIssueArgs, args)
        index = service.store.index
        assert index is not None
        apartment = parsed.apartment
        if parsed.holder is not None:
            holder = index.holders.get(parsed.holder)
            if holder is None or holder.apartment is None:
                raise CommandRejected("failed", f"no resident holder {parsed.holder!r}")
            if apartment is not None and apartment != holder.apartment:
                raise CommandRejected("failed", f"holder {parsed.holder!r} is not of apartment {apartment!r}")
            apartment = holder.apartment
        if apartment is None:
            raise BadArgs("pass/issue needs holder or apartment")
        try:
            made, secret = await service.passes.issue(
                parsed.order(), apartment=apartment, issued_by="platform", holder_id=parsed.holder
            )
        except PassError as exc:
            raise CommandRejected("failed", str(exc)) from None
        return {"pass": made.public(), "secret": secret}

    async def revoke(args: dict[str, Any]) -> dict[str, Any]:
        parsed = _parse(PassRevokeArgs, args)
        try:
            revoked = await service.passes.revoke(parsed.pass_, apartment=parsed.apartment, revoked_by="platform")
        except PassNotFound as exc:
            raise CommandRejected("failed", str(exc)) from None
        return {"pass": revoked.public()}

    router.register("pass/issue", issue, replace=True)
    router.register("pass/revoke", revoke, replace=True)


def unregister_pass_commands(router: CommandRouter) -> None:
    for name in NAMES:
        router.unregister(name)


def _parse(model: type[M], args: dict[str, Any]) -> M:
    try:
        return model.model_validate(args)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(args)"
        # pydantic's message; never the input value, which could be a PIN
        raise BadArgs(f"{where}: {first['msg']}") from None

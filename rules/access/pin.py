"""PIN hashing: HMAC-SHA256 keyed with a site secret, ``hs256$<64 hex>``.

Why a fast keyed hash and not argon2/bcrypt: a 4-8 digit PIN has 10^4-10^8 values. A slow hash
cannot protect so small a space offline (10^4 argon2 guesses at 50 ms is eight minutes) yet it would
cost tens of milliseconds of CPU per keypad entry on a Raspberry Pi, on the path that must answer
in milliseconds. So the protection is split where it works:

- online guessing at a keypad is stopped by the retry lockout (per credential and per reader,
  :class:`rules.access.model.LockoutPolicy`);
- offline guessing from a stolen credential database or sync payload is stopped by the key: the
  hash is an HMAC under a secret that lives outside the credential store (a 0600 key file, like
  the readers' secure-channel keys) and never travels in snapshots or deltas. Without the key the
  hashes reveal nothing; rotating the key means re-enrolling PINs.

Salting: a card+PIN credential's PIN is bound to that credential (its id is the salt), so the same
PIN on two cards gives two different hashes. A PIN-only credential must be found from the PIN
alone (O(1) dict lookup at the keypad), so its hash is unsalted under the key; such PINs are
unique on the site anyway (two holders with one PIN could not be told apart).

No plaintext PIN is stored, logged, put in an event or echoed in an error message.
"""

from __future__ import annotations

import hashlib
import hmac

PIN_MIN_DIGITS = 4
PIN_MAX_DIGITS = 8
_SCHEME = "hs256$"
_PIN_ONLY_SALT = b"pin-only"
MIN_KEY_BYTES = 16


def check_pin_format(pin: str) -> None:
    """Raise ValueError if ``pin`` is not 4-8 ASCII digits. The message never contains the PIN."""
    if not (PIN_MIN_DIGITS <= len(pin) <= PIN_MAX_DIGITS and pin.isascii() and pin.isdigit()):
        raise ValueError(f"a PIN is {PIN_MIN_DIGITS} to {PIN_MAX_DIGITS} digits")


class PinHasher:
    """Makes and checks PIN hashes under the site's PIN key (at least 16 random bytes)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the PIN key must be at least {MIN_KEY_BYTES} bytes")
        # A keyed HMAC object copied per use skips re-deriving the key pads each time.
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def _digest(self, salt: bytes, pin: str) -> str:
        mac = self._keyed.copy()
        mac.update(salt)
        mac.update(b"\x00")
        mac.update(pin.encode("ascii"))  # check_pin_format made it ASCII digits
        return _SCHEME + mac.hexdigest()

    def pin_only(self, pin: str) -> str:
        """The hash of a PIN-only credential's PIN; also the key of the keypad lookup."""
        check_pin_format(pin)
        return self._digest(_PIN_ONLY_SALT, pin)

    def for_card(self, credential_id: str, pin: str) -> str:
        """The hash of a card+PIN credential's PIN, salted with the credential's id."""
        check_pin_format(pin)
        return self._digest(b"card:" + credential_id.encode(), pin)

    def lookup_key(self, entered: str) -> str | None:
        """The PIN-only lookup key for what was typed at a keypad; None if it cannot be a PIN."""
        try:
            return self.pin_only(entered)
        except ValueError:
            return None

    def matches_card_pin(self, stored_hash: str, credential_id: str, entered: str) -> bool:
        try:
            candidate = self.for_card(credential_id, entered)
        except ValueError:
            return False
        return hmac.compare_digest(candidate, stored_hash)

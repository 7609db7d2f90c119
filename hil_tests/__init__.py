"""Hardware-in-the-loop commissioning checks an installer runs at a site (see hil_tests/README.md)."""

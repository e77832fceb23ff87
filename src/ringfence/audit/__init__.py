"""The audit log (``log``): append-only, hash-chained JSON Lines in the user's state directory,
and the records ringfence writes to it (``records``)."""

"""Partition state: small changelogged stores and the triggers; pure, no I/O.

`partition.PartitionState` coordinates, per input partition, the stores `event_ids`
(`s`), `orders` (`o`), `identities` (`i`: cartless visitors; a cart's email is in its
`c` record), `carts` (`c`) and `triggers` (`b` and the timers); `records` holds the one
changelog key format, `compose` the command builders.
"""

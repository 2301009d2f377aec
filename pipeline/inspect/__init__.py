"""Read-side commands over the input topic: `explain` (one cart, event by event) and
`replay` (re-send a time range's commands to Journey).

They run the service's own code (source -> state, and journey for sending) on records
read with `assign()` under a throwaway group id: nothing here joins the consumer group,
commits an offset or writes to the changelog. Never imported by the service.
"""

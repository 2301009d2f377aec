"""What goes out to Ofsys Journey, in the order it flows.

commands   the contract as types: `Command` and the table of calls (`CALLS`)
batch      commands -> request bodies within both bounds, with a content batch id
client     the `Transport` seam and its HTTP implementation, `JourneyClient`
delivery   the response table (`Delivery`) and the in-order worker (`DeliveryWorker`)
"""

"""Mining over time: detection periods, the state of the ground between them, change products."""

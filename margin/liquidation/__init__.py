"""Liquidation plans for overdue calls (issue 12): the model, the services and the API's
actions. The optimiser is ``margin.engine.liquidation``; the plan is stored with the snapshot
and the call it rests on and becomes an instruction only when a second person approves it."""

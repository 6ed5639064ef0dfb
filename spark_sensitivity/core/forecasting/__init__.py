"""The forecast of each strategy's estimation error from a pilot's losses."""

"""Offline jobs over a history, through the production driver: detect, replay, backtest,
and the detectors' evaluation against baselines."""

"""Sending an issue: plan it, then claim, build, pace, send and record each ledger row, resumably."""

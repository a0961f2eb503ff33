"""`newsletter doctor`: what receivers and providers will hold against this sender, checked
before the first send and whenever mail goes to spam (see checkup.py)."""

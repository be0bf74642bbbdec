"""The verifier chain: attack, bounds and MILP behind one contract."""

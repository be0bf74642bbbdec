"""The contract between the stages: what Spec, Verify and Search all speak, and nothing else.

Torch-free, and importing no other stage: source spans, the verifier catalogue (names,
soundness, cost tier, declared options), chain steps, search methods and solver availability.
"""

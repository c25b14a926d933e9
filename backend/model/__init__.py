"""Loading one sequence-classification checkpoint and batched inference."""

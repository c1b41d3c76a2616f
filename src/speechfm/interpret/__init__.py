"""Interpretation: Integrated Gradients for every transformer layer and the Layer Utilization Rate."""

"""The utility report: fidelity metrics, train-on-synthetic accuracy, low-data gains, figures."""

"""Reading what runs left behind: the report over sweep directories (mean ± std, paired
bootstrap), run-directory helpers, and attention heatmaps for TensorBoard and PNG files.

Imports only the shared ground and plotting libraries, so that training (which logs plots and
names durations) and serving (which reads run directories) can both use it.
"""

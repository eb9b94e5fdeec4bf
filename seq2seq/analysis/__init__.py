"""Reading what runs left behind: the report over sweep directories (mean ± std, paired
bootstrap), run-directory helpers, attention heatmaps for TensorBoard and PNG files, and the
alignment error rate against gold alignments.

Imports only the shared ground and plotting libraries, so that training (which logs plots and
names durations) and serving (which reads run directories) can both use it.
"""

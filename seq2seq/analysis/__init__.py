"""Reading what runs left behind: the report over sweep directories (mean ± std, paired
bootstrap), run-directory helpers, attention heatmaps for TensorBoard and PNG files, the
alignment error rate against gold alignments, and attention statistics (entropy, coverage,
diagonal share).

Imports the shared ground, ``inference`` (forced decoding, alignments) and plotting libraries,
never ``training`` or ``serving``, so that training (which logs plots and names durations) and
serving (which reads run directories) can both use it.
"""

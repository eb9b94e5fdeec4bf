"""Training a model: the trainer (the loop only), its state, optimizer and schedules, the loss,
the validation pass (val loss and attention statistics together), checkpoint averaging,
resuming, the end of a run (final model, test, results.json), TensorBoard logging and DDP; the
checks around a run (whether its model fits in memory, a warning when it diverges).

Imports everything below it (shared ground, ``nn``, ``data``, ``inference``, ``analysis``);
never ``serving`` or ``cli``.
"""

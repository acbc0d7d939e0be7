"""What a run reports besides its checkpoints: metrics sinks, sample generations, plots."""

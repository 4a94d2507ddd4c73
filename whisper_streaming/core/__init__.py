"""Pure values and helpers every layer shares: audio formats (G.711, resampling), language policy, stream options, transcripts, results."""

"""Batch (whole-file) analysis: requests, the transcription service, jobs, output formats."""

"""Uploaded audio and video files: decoding to 16 kHz mono float32 with PyAV (the batch API's input)."""

from whisper_streaming.media.decode import ALLOWED_DEMUXERS, DecodedMedia, decode_media, probe_duration_s

__all__ = ["ALLOWED_DEMUXERS", "DecodedMedia", "decode_media", "probe_duration_s"]

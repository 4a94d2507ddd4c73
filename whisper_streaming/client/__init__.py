"""Client library (asyncio and blocking) and the ``whisper-streaming-client`` CLI."""

from whisper_streaming.client.streaming import MAX_AUDIO_PACKET_BYTES, AsyncStreamingClient, Partial, Result, StreamEvent, StreamingClient

__all__ = ["AsyncStreamingClient", "StreamingClient", "Result", "Partial", "StreamEvent", "MAX_AUDIO_PACKET_BYTES"]

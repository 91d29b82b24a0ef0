"""stt_svc: streaming speech recognition (dragoman.stt.v1.SpeechToTextService).

server.py (servicer, create/serve/main) -> stream.py (one stream: decode audio,
segment it with the VAD, schedule partial and final decodes; flow.py limits
its chunk rate) -> models.py (model per language) -> lanes.py (one decode
thread per model, batching queued decodes across streams, finals first) ->
engines/ (faster-whisper, Triton, fake).
"""

"""stt_svc: streaming speech recognition (dragoman.stt.v1.SpeechToTextService).

server.py (servicer, create/serve/main) -> stream.py (one stream: decode audio,
segment it with the VAD, schedule partial and final decodes) -> models.py
(model per language, one decode lane each) -> engines/ (faster-whisper, fake).
"""

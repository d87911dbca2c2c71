"""Identification over HTTP (``coverhunter serve``): ``POST /identify`` with an audio file
as the request body returns the ranked works as JSON; ``GET /health`` describes the index.

    curl --data-binary @song.flac 'http://127.0.0.1:8000/identify?top=5'

A bad upload is answered 4xx with a message, never 500: an empty body 400, one over
``serve.max_upload_mb`` or a recording over ``serve.max_duration_s`` 413, audio that does
not decode or is shorter than ``serve.min_duration_s`` 422. Requests are answered
concurrently; the network runs one query at a time (a lock), which keeps its threads
from competing for the cores.
"""
from __future__ import annotations

import asyncio
import tempfile
import threading
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request

from coverhunter.features.audio import AudioDecodeError, load_audio
from coverhunter.params import ServeParams
from coverhunter.retrieval.search import Searcher, SilentQueryError


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refused as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"upload of {int(declared)} bytes is over the limit of {limit} (serve.max_upload_mb)")
    data = bytearray()
    async for part in request.stream():
        data += part
        if len(data) > limit:
            raise HTTPException(413, f"upload is over the limit of {limit} bytes (serve.max_upload_mb)")
    if not data:
        raise HTTPException(400, "empty upload: send the audio file as the request body "
                                 "(curl --data-binary @song.flac ...)")
    return bytes(data)


def create_app(searcher: Searcher, s: ServeParams) -> FastAPI:
    app = FastAPI(title="CoverHunter", description="Which catalogue work is this recording a version of?")
    one_at_a_time = threading.Lock()
    rate = searcher.p.features.sample_rate
    index = searcher.index

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "recordings": len(index.recordings()), "vectors": len(index),
                "kind": index.kind, "threshold": searcher.threshold,
                "model_sha1": index.meta.get("model_sha1")}

    def decode_and_identify(data: bytes, top: int | None) -> dict:
        with tempfile.NamedTemporaryFile(suffix=".audio") as tmp:
            Path(tmp.name).write_bytes(data)
            try:
                audio = load_audio(tmp.name, rate)
            except AudioDecodeError as err:
                raise HTTPException(422, "the upload is not audio this service decodes "
                                         f"(wav, flac, ogg, mp3): {str(err).split(': ', 1)[-1]}") from None
        seconds = len(audio) / rate
        if seconds > s.max_duration_s:
            raise HTTPException(413, f"recording of {seconds:.0f} s is over the limit of "
                                     f"{s.max_duration_s:g} s (serve.max_duration_s)")
        if seconds < s.min_duration_s:
            raise HTTPException(422, f"recording of {seconds:.2f} s is shorter than "
                                     f"{s.min_duration_s:g} s (serve.min_duration_s)")
        with one_at_a_time:
            try:
                matches = searcher.identify_audio(audio, top)
            except SilentQueryError as err:
                raise HTTPException(422, str(err)) from None
        return {"duration_s": round(seconds, 3), "threshold": searcher.threshold,
                "matches": [m.as_dict() for m in matches]}

    @app.post("/identify")
    async def identify(request: Request, top: int | None = None) -> dict:
        if top is not None and not 1 <= top <= 100:
            raise HTTPException(422, f"top must be between 1 and 100, got {top}")
        data = await _body(request, int(s.max_upload_mb * 2**20))
        return await asyncio.to_thread(decode_and_identify, data, top)

    return app


def serve(searcher: Searcher, s: ServeParams) -> None:
    """Run the service until interrupted."""
    import uvicorn
    uvicorn.run(create_app(searcher, s), host=s.host, port=s.port, log_level="info")

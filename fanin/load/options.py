"""`fanin load`'s options as one frozen, picklable value: built once from the command line
(by command.py, where the argparse Namespace ends), checked once here, then only read.

`None` means "not given": a mode's default applies (see the properties), and an option of
the other mode that was given is refused rather than ignored. Everything that reads a file
(the body, the dataset) or parses text (durations, paths, thresholds, SLOs, the sweep) has
already happened, so plans, workers and reports never parse or validate again."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property

from fanin.errors import UsageError
from fanin.load.dataset import DatasetItem
from fanin.load.synthetic import LengthDist
from fanin.measure.report import Threshold
from fanin.load.slo import Slo
from fanin.stream import Request, StreamConfig

__all__ = ["LoadOptions", "DEFAULT_CONNECTIONS", "DEFAULT_DURATION_S", "check_output_path"]

DEFAULT_CONNECTIONS = 10
DEFAULT_DURATION_S = 10.0
DEFAULT_RETRIES = 3
DEFAULT_RECONNECT = "error"
DEFAULT_CONNECT_TIMEOUT_S = 30.0
DEFAULT_MAX_IN_FLIGHT = 1000
DEFAULT_GRACE_S = 30.0
DEFAULT_HTTP_CLIENT = "lean"
DEFAULT_ATTAINMENT = 0.9


@dataclass(frozen=True)
class LoadOptions:
    """What the user asked for, typed. Fields are None when the option was not given."""

    mode: str  # streams | requests
    requests: tuple[Request, ...]  # one per URL, validated (the body read once)
    method: str
    connections: int | None = None
    duration: float | None = None
    ramp_up: float | None = None
    rate: float | None = None
    warmup: float | None = None
    workers: int | None = None
    connect_timeout: float | None = None
    idle_timeout: float | None = None
    retries: int | None = None
    reconnect: str | None = None
    latency_field: tuple[str, ...] | None = None
    latency_field_text: str | None = None
    latency_unit: str = "auto"
    json: str | None = None  # report file; "-" is stdout
    html: str | None = None  # the self-contained HTML report (html_report.py)
    thresholds: tuple[Threshold, ...] = ()
    progress: bool = True
    # delivery accounting (streams mode): the event id, or a number in the JSON data
    seq_ids: bool = False
    seq_field: tuple[str, ...] | None = None
    seq_field_text: str | None = None
    http_client: str | None = None  # streams mode: lean (default) or aiohttp (lean_http.py)
    # request mode
    limit: int | None = None  # -n/--requests
    request_rate: float | None = None
    arrival: str | None = None
    seed: int | None = None
    max_in_flight: int | None = None
    dataset: str | None = None
    dataset_items: tuple[DatasetItem, ...] | None = None
    shuffle: bool = False
    extract: tuple[str, ...] | None = None
    extract_text: str | None = None
    usage_field: tuple[str, ...] | None = None
    usage_field_text: str | None = None
    stop_on: str | None = None
    slos: tuple[Slo, ...] = ()
    slo_attainment: float | None = None
    sweep: tuple[str, tuple[float, ...]] | None = None
    grace: float | None = None
    chart: str | None = None
    # request mode at parity with the LLM benchmarks (see request_command.py)
    api: str | None = None  # openai | anthropic | dify: --api, or told by the URLs' path
    api_given: bool = False
    model: str | None = None
    input_tokens: LengthDist | None = None
    output_tokens: LengthDist | None = None
    tokenizer: str | None = None  # a local tokenizer.json
    burstiness: float | None = None
    ramp_strategy: str | None = None  # linear | exponential (open loop)
    ramp_start_rate: float | None = None
    max_concurrency: int | None = None  # open loop: due requests wait for one of N places
    percentiles: tuple[float, ...] | None = None
    csv: str | None = None

    def __post_init__(self) -> None:
        self._check()

    # ------------------------------------------------------------------ defaults applied
    @property
    def sequence(self) -> str | None:
        """What numbers the events for delivery accounting: "id", "data PATH", or None (off)."""
        if self.seq_ids:
            return "id"
        return f"data {self.seq_field_text}" if self.seq_field is not None else None

    @property
    def run_duration(self) -> float | None:
        """Seconds of the run; None in request mode with -n and no -d (until done)."""
        if self.duration is not None:
            return self.duration
        return None if self.mode == "requests" and self.limit is not None else DEFAULT_DURATION_S

    @property
    def users(self) -> int:
        return self.connections if self.connections is not None else DEFAULT_CONNECTIONS

    @property
    def process_count(self) -> int:
        """Processes to run (streams mode: never more than the connections)."""
        workers = self.workers or 1
        return min(workers, self.users) if self.mode == "streams" else workers

    @property
    def client_kind(self) -> str:
        return self.http_client or DEFAULT_HTTP_CLIENT

    @property
    def warmup_s(self) -> float:
        return self.warmup or 0.0

    @property
    def in_flight_cap(self) -> int:
        return self.max_in_flight if self.max_in_flight is not None else DEFAULT_MAX_IN_FLIGHT

    @property
    def grace_s(self) -> float:
        return self.grace if self.grace is not None else DEFAULT_GRACE_S

    @property
    def attainment(self) -> float:
        return self.slo_attainment if self.slo_attainment is not None else DEFAULT_ATTAINMENT

    @property
    def chart_path(self) -> str | None:
        """The sweep chart: --chart, else next to --json (same name, .png)."""
        if self.chart:
            return self.chart
        if self.json and self.json != "-":
            return os.path.splitext(self.json)[0] + ".png"
        return None

    @property
    def synthetic(self) -> bool:
        return self.input_tokens is not None or self.output_tokens is not None

    @property
    def effective_stop_on(self) -> str | None:
        """--stop-on, else the API's end marker (OpenAI's [DONE])."""
        if self.stop_on is not None:
            return self.stop_on
        from fanin.load.apis import DEFAULT_STOP_ON

        return DEFAULT_STOP_ON.get(self.api or "")

    @property
    def ramp_start(self) -> float | None:
        """The open loop's rate at the start of --ramp-up (default a tenth of --request-rate)."""
        if self.ramp_up is None or self.request_rate is None:
            return None
        return self.ramp_start_rate if self.ramp_start_rate is not None else self.request_rate / 10

    def stream_config(self) -> StreamConfig:
        """The engine's configuration for this run (request mode never re-sends); built and
        checked once, then shared by every plan."""
        return self._config

    @cached_property
    def _config(self) -> StreamConfig:
        config = StreamConfig(
            connect_timeout=self.connect_timeout if self.connect_timeout is not None else DEFAULT_CONNECT_TIMEOUT_S,
            idle_timeout=self.idle_timeout,
            retries=self.retries if self.retries is not None else DEFAULT_RETRIES,
            reconnect=self.reconnect or DEFAULT_RECONNECT,
        )
        if self.mode == "requests":
            config.reconnect, config.retries, config.stop_on = "never", 0, self.effective_stop_on
        config.validate()
        return config

    # ------------------------------------------------------------------ the one check
    def _check(self) -> None:
        if self.connections is not None and self.connections < 1:
            raise UsageError("-c/--connections must be at least 1")
        if self.workers is not None and self.workers < 1:
            raise UsageError("--workers must be at least 1")
        duration = self.run_duration
        if duration is not None and duration <= 0:
            raise UsageError("--duration must be more than 0")
        if self.warmup is not None and duration is not None and self.warmup >= duration:
            raise UsageError("--warmup must be shorter than --duration")
        if self.seq_ids and self.seq_field is not None:
            raise UsageError("give --seq-ids (the event id is the number) or --seq-field PATH, not both")
        if self.mode == "streams":
            self._check_streams()
        else:
            self._check_requests()
        self.stream_config()
        for path in (self.json, self.html, self.chart_path if self.sweep else None, self.csv):
            if path and path != "-":
                check_output_path(path)

    def _check_streams(self) -> None:
        given = [flag for flag, value in (
            ("-n/--requests", self.limit), ("--request-rate", self.request_rate), ("--dataset", self.dataset),
            ("--extract", self.extract), ("--usage-field", self.usage_field), ("--sweep", self.sweep),
            ("--slo", self.slos), ("--stop-on", self.stop_on), ("--chart", self.chart),
            ("--arrival", self.arrival), ("--seed", self.seed), ("--max-in-flight", self.max_in_flight),
            ("--shuffle", self.shuffle), ("--grace", self.grace), ("--slo-attainment", self.slo_attainment),
            ("--api", self.api if self.api_given else None), ("--model", self.model),
            ("--input-tokens", self.input_tokens), ("--output-tokens", self.output_tokens),
            ("--tokenizer", self.tokenizer), ("--burstiness", self.burstiness),
            ("--ramp-strategy", self.ramp_strategy), ("--ramp-start-rate", self.ramp_start_rate),
            ("--max-concurrency", self.max_concurrency), ("--percentiles", self.percentiles), ("--csv", self.csv),
        ) if value is not None and value is not False and value != ()]
        if given:
            raise UsageError(f"{', '.join(given)} {'needs' if len(given) == 1 else 'need'} --mode requests")
        if self.rate is not None and self.rate <= 0:
            raise UsageError("--rate must be a positive number of connections per second")

    def _check_requests(self) -> None:
        explicit_c = self.connections is not None
        if self.sequence is not None:
            raise UsageError("--seq-ids and --seq-field count delivery on long-lived streams: use them with "
                             "--mode streams")
        if self.request_rate is not None and explicit_c and not self.sweep:
            raise UsageError("give -c (closed loop: concurrent users) or --request-rate (open loop), not both")
        if self.request_rate is not None and not self.request_rate > 0:
            raise UsageError("--request-rate must be a positive number of requests per second")
        if self.limit is not None and self.limit < 1:
            raise UsageError("-n/--requests must be at least 1")
        if self.max_in_flight is not None and self.max_in_flight < 1:
            raise UsageError("--max-in-flight must be at least 1")
        if self.retries is not None or self.reconnect is not None:
            raise UsageError("--retries and --reconnect are for --mode streams: request mode sends each request "
                             "once and counts a failure as a failed request")
        if self.rate is not None:
            raise UsageError("--rate is for --mode streams; use -c or --request-rate")
        if self.http_client is not None:
            raise UsageError("--http-client is for --mode streams (request mode reads its answers with aiohttp)")
        self._check_parity()
        if self.sweep and self.sweep[0] == "concurrency" and self.request_rate is not None:
            raise UsageError("--sweep concurrency=... runs closed-loop steps; drop --request-rate")
        if self.sweep and self.sweep[0] == "rate" and explicit_c:
            raise UsageError("--sweep rate=... runs open-loop steps; drop -c")
        if self.chart and not self.sweep:
            raise UsageError("--chart draws a --sweep; give --sweep too")

    def _check_parity(self) -> None:
        """The options request mode shares with vLLM bench, GuideLLM and AIPerf."""
        open_loop = self.request_rate is not None or (self.sweep is not None and self.sweep[0] == "rate")
        if self.burstiness is not None:
            if not self.burstiness > 0:
                raise UsageError("--burstiness must be more than 0 (1 is Poisson; lower is burstier)")
            if self.arrival not in (None, "gamma"):
                raise UsageError(f"--burstiness draws gamma arrivals; drop --arrival {self.arrival}")
        if (self.burstiness is not None or self.arrival == "gamma") and not open_loop:
            raise UsageError("--burstiness and --arrival gamma shape an open loop; give --request-rate")
        if self.ramp_up is not None and self.sweep:
            raise UsageError("--ramp-up ramps one run; a --sweep has its steps (use --warmup per step)")
        if self.ramp_up is not None and self.run_duration is not None and self.ramp_up >= self.run_duration:
            raise UsageError("--ramp-up must be shorter than --duration")
        if self.ramp_strategy is not None and (self.ramp_up is None or self.request_rate is None):
            raise UsageError("--ramp-strategy shapes an open-loop --ramp-up; give --request-rate and --ramp-up")
        if self.ramp_start_rate is not None:
            if self.ramp_up is None or self.request_rate is None:
                raise UsageError("--ramp-start-rate needs --request-rate and --ramp-up")
            if not 0 < self.ramp_start_rate <= self.request_rate:
                raise UsageError("--ramp-start-rate must be more than 0 and at most --request-rate")
        if self.max_concurrency is not None:
            if self.max_concurrency < 1:
                raise UsageError("--max-concurrency must be at least 1")
            if not open_loop:
                raise UsageError("--max-concurrency caps an open loop (--request-rate); with -c the users "
                                 "are the concurrency")
        for p in self.percentiles or ():
            if not 0 < p <= 100:
                raise UsageError(f"--percentiles: {p:g} is not a percentile (more than 0, at most 100)")
        if self.synthetic:
            if self.api is None:
                raise UsageError("--input-tokens/--output-tokens build bodies for one API: give --api "
                                 "openai|anthropic|dify (or a URL whose path names it)")
            if self.dataset is not None:
                raise UsageError("give --dataset or --input-tokens/--output-tokens, not both")
            if self.api == "dify" and self.output_tokens is not None:
                raise UsageError("--output-tokens: a Dify app's answer length is set by the app, not the request")
        elif self.model is not None:
            raise UsageError("--model names the model in synthetic bodies; give --input-tokens or --output-tokens")


def check_output_path(path: str) -> None:
    """A report or chart path that cannot be written is found before any load starts."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UsageError(f"cannot write {path}: it is a directory")
    if not os.path.isdir(folder):
        raise UsageError(f"cannot write {path}: the directory {folder} does not exist")
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise UsageError(f"cannot write {path}: permission denied")

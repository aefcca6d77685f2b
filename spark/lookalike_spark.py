#!/usr/bin/env python3
"""lookalike on Apache Spark: embed a collection of images and videos into vector shards.

    spark-submit spark/lookalike_spark.py INPUT... --out DIR [options]

Spark lists the input, splits it into tasks, retries the ones that fail and scales to the
cluster; each task runs `lookalike embed` (the one program that turns pictures into vectors,
the same code as `lookalike index`) and leaves one Parquet vector shard in DIR. Then, on the
machine that serves: `lookalike import DIR` and `lookalike serve`. See docs/spark.md.

Two ways to read the input:

* `--input-mode bytes` (default): Spark's own `binaryFile` source reads the files, wherever
  Spark can (HDFS, S3 through s3a://, a local folder), and each task streams its files' bytes
  to `lookalike embed --tar -` as a tar stream: the executors need no mount of the photos.
* `--input-mode paths`: INPUT folders (or `--manifest` files of paths) that every executor
  sees at the same place (NFS, a cluster file system, one machine); tasks send only paths
  and `lookalike embed` reads the files itself. Also for files over 2 GiB, which `binaryFile`
  cannot hold in one row.

The output folder must be a path every executor can write (a local folder in local mode, a
shared mount on a cluster): `lookalike embed` writes its shard there itself. One job at a
time per output folder.

Re-running the job with the same arguments after a failure only redoes what is missing: the
paths already in the shards of DIR (read with Spark's Parquet reader) are left out, and the
rest is split exactly as the first run split it, so a lost shard comes back under its own
name (`lookalike embed` names a shard by a hash of its inputs) and no shard is rewritten.

The `lookalike` binary and its model folder reach the executors through Spark itself:
`--binary PATH` and `--model-dir DIR` ship them from the driver (SparkContext.addFile, and
addArchive of a tar of the folder); or ship them with spark-submit, under the names this
job looks for: `--files /path/to/lookalike` (a file named `lookalike`) and
`--archives /path/to/lookalike-models.tar#lookalike-models` (a tar of the model folder:
`efficientnet-lite0/` and `onnxruntime-1.32.0/` at its top, or one folder holding them).
Without either, `lookalike` on the executors' PATH and its own model cache are used.

`--gpus` runs every task on a GPU of its own: the job asks Spark for GPU executors the standard
way (spark.executor.resource.gpu.amount, one GPU per task through
spark.task.resource.gpu.amount, a discovery script with `--gpu-discovery-script`; settings
given with spark-submit --conf are kept) and each task runs `lookalike --device cuda:N embed`
with N the GPU Spark gave it. A task that got no GPU fails rather than run on the CPU. Spark's
local mode (`local[N]`) schedules no GPUs: use a cluster, or `local-cluster[...]` on one machine.
"""

import argparse
import atexit
import datetime
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time

# What `lookalike index` picks up (src/ingest/scan.rs, src/video/mod.rs), by extension.
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff")
VIDEO_EXTENSIONS = ("mp4", "m4v", "mkv", "webm", "avi", "mov", "mpeg", "mpg")

# The largest file the binaryFile source can put in a row (it throws on a longer one, but only
# when the content is read: selecting path/length/modificationTime never opens the file).
SPARK_MAX_FILE_BYTES = 2**31 - 1

# The names this job looks for among the files shipped to the executors.
BINARY_NAME = "lookalike"
MODELS_NAMES = (
    "lookalike-models",
    "lookalike-models.tar",
    "lookalike-models.tar.gz",
    "lookalike-models.tgz",
)
FFMPEG_NAME = "ffmpeg"

JOB_RECORD = "_lookalike_job.json"

# When the driver script started: the Spark session's start-up is measured from here.
SCRIPT_STARTED = time.time()

# Spark's file-source settings that decide how bytes mode groups files into tasks. They are
# recorded in the job record and reused by a re-run (unless set with --conf), so that a re-run
# on a cluster of another size groups the missing files as the first run did.
MAX_PARTITION_BYTES = "spark.sql.files.maxPartitionBytes"
OPEN_COST = "spark.sql.files.openCostInBytes"
MIN_PARTITIONS = "spark.sql.files.minPartitionNum"

# Spark's settings for GPU scheduling (https://spark.apache.org/docs/latest/configuration.html
# #custom-resource-scheduling-and-configuration-overview), as --gpus sets them.
EXECUTOR_GPUS = "spark.executor.resource.gpu.amount"
TASK_GPUS = "spark.task.resource.gpu.amount"
GPU_DISCOVERY_SCRIPT = "spark.executor.resource.gpu.discoveryScript"

# Default task size in bytes mode. Spark's own default (128 MB, about 20 photos once its 4 MB
# per-file "open cost" is counted) would start a process and load the network (0.18 s) for
# every 20 photos; 1 GiB is about 150 photos of 3 MB. Spark still cuts smaller tasks when the whole
# input divided by the parallelism is smaller than this, so that every core gets work.
DEFAULT_PARTITION_BYTES = 1 << 30


def case_insensitive_glob(extensions):
    """A Hadoop glob matching file names that end in one of `extensions`, in any case
    (`*.{[jJ][pP][gG],...}`): Spark's pathGlobFilter is case-sensitive, and is applied while
    listing, so files of other kinds are never read."""
    alternatives = ",".join(
        "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in ext)
        for ext in extensions
    )
    return "*.{" + alternatives + "}"


def local_path(uri):
    """The path on this machine of a `file:` URI as Spark writes it (`file:/a/b`, also
    `file:///a/b`), None for another scheme. Spark's `path` column holds the path as it is,
    not percent-encoded: `file:/x/a b%20.jpg` is the file `/x/a b%20.jpg` (checked)."""
    if not uri.startswith("file:"):
        return None
    path = uri[len("file:") :]
    if path.startswith("//"):
        path = path[2:]  # file:///a/b (an empty authority)
    return path


def key_of(uri):
    """The key a file is stored under: for a local file its absolute, symlink-free path,
    exactly what `lookalike index` and `lookalike embed --manifest` store (so an index can mix
    files indexed on one machine and imported from Spark); for any other URI (hdfs://, s3a://)
    the URI itself."""
    path = local_path(uri)
    return uri if path is None else os.path.realpath(path)


def manifest_key(line, cwd):
    """The key of a manifest line (a local path, relative ones from the driver's working
    directory, or a file: URI): its symlink-free path where this machine sees the file, else
    the line as written, which is also the key `lookalike embed` reports it under."""
    path = local_path(line) if line.startswith("file:") else line
    path = os.path.join(cwd, path)
    return os.path.realpath(path) if os.path.exists(path) else line


def pax_seconds(ns):
    """Nanoseconds since the epoch as the decimal seconds of a PAX `mtime` record
    ("1700000000.123456789"), which `lookalike embed` reads back exactly."""
    sign = "-" if ns < 0 else ""
    seconds, fraction = divmod(abs(ns), 10**9)
    return f"{sign}{seconds}.{fraction:09d}"


def parse_bytes(text):
    """`1g`, `512m`, `64k` or a plain number of bytes."""
    m = re.fullmatch(r"\s*(\d+)\s*([kmgt]?)i?b?\s*", str(text).lower())
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1g, 512m, 65536)")
    return int(m.group(1)) * 1024 ** " kmgt".index(m.group(2) or " ")


# --------------------------------------------------------------------------------------------
# Executor side: one task = one `lookalike embed` process = one shard.
# --------------------------------------------------------------------------------------------


def shipped(name):
    """A file or folder shipped to this executor under `name` (addFile/addArchive from the
    driver or spark-submit --files/--archives), or None. SparkFiles.get(name) is where Spark
    puts it: the driver's userFiles-* folder in local mode, the executor's working directory
    on a cluster (where YARN localizes --files and --archives too); an archive is unpacked into
    a folder with the archive's file name, or its #alias (checked)."""
    from pyspark import SparkFiles

    candidates = []
    try:
        candidates.append(SparkFiles.get(name))
    except Exception:  # no SparkFiles root (not in a task)
        pass
    candidates.append(os.path.join(os.getcwd(), name))
    return next((c for c in candidates if os.path.exists(c)), None)


def executable(path):
    """`path`, or a private executable copy of it when it lacks the exec bit. Spark's addFile
    leaves fetched files executable (it chmods them a+x, checked with a 0644 file); a
    resource manager's localizer may not."""
    if os.access(path, os.X_OK):
        return path
    copy = os.path.join(tempfile.mkdtemp(prefix="lookalike-bin-"), os.path.basename(path))
    shutil.copyfile(path, copy)
    os.chmod(copy, 0o755)
    return copy


def model_folder(root):
    """The model folder in an unpacked archive: the folder itself when it holds the model
    files, or its only sub-folder (an archive of the folder rather than of its contents)."""
    entries = os.listdir(root)
    if any(e.startswith(("efficientnet-", "onnxruntime-")) for e in entries):
        return root
    subdirs = [e for e in entries if os.path.isdir(os.path.join(root, e))]
    if len(subdirs) == 1:
        return model_folder(os.path.join(root, subdirs[0]))
    return root


def resolve_tools(cfg):
    """The binary, model folder and PATH this executor runs `lookalike embed` with."""
    if cfg["binary_path"]:
        binary = cfg["binary_path"]
    else:
        found = shipped(cfg["binary_name"])
        binary = found or shutil.which(BINARY_NAME)
        if binary is None:
            raise RuntimeError(
                "lookalike: no binary on this executor: pass --binary PATH, ship it with "
                "spark-submit --files /path/to/lookalike, or install `lookalike` on the PATH"
            )
    binary = executable(binary)

    model_dir = cfg["model_path"]
    if model_dir is None:
        for name in cfg["model_names"]:
            found = shipped(name)
            if found and os.path.isdir(found):
                model_dir = model_folder(found)
                break

    path = os.environ.get("PATH", "")
    ffmpeg = shipped(FFMPEG_NAME)
    if ffmpeg and os.path.isfile(ffmpeg):
        ffmpeg = executable(ffmpeg)
        path = os.path.dirname(ffmpeg) + os.pathsep + path
    return binary, model_dir, path


def parent_death_signal():
    """A function for the child to run before exec: be killed with SIGKILL when the Python
    worker that started it dies. Spark kills the worker of a cancelled task (a speculative copy
    that lost, a job that failed); without this the embed process would go on and write its
    shard anyway. prctl is looked up here, in the parent: between fork and exec the child only
    calls it (checked: kill -9 of the parent takes the child with it)."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def arm():
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return arm


def tail(path, limit=4000):
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - limit))
        return f.read().decode("utf-8", "replace").strip()


def describe_exit(code):
    if code < 0 or code in (128 + signal.SIGKILL, 128 + signal.SIGTERM):
        number = -code if code < 0 else code - 128
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = str(number)
        hint = (
            " (SIGKILL is what the kernel's OOM killer and YARN/Kubernetes memory limits send: "
            "give the executors more spark.executor.memoryOverhead, see docs/spark.md)"
            if number == signal.SIGKILL
            else ""
        )
        return f"was killed by signal {name}{hint}"
    return f"exited with status {code}"


def task_device(gpus, resources):
    """The `--device` a task's `lookalike` runs with: None without --gpus (no flag at all, the
    command line of a CPU job), else `cuda:N` with N the address of the GPU Spark gave the task.
    `resources` is TaskContext.resources(): a resource name to a ResourceInformation (its
    `.addresses`) or to a plain list of addresses. With --gpus, a task that got no GPU fails
    (ValueError) rather than run on the CPU: a GPU job that quietly ran on CPUs would only look
    slow. A task given several GPUs (spark.task.resource.gpu.amount > 1) uses the first: one
    `lookalike` process runs on one device."""
    if not gpus:
        return None
    gpu = (resources or {}).get("gpu")
    addresses = list(getattr(gpu, "addresses", gpu) or [])
    if not addresses:
        raise ValueError(
            "lookalike: --gpus, but Spark gave this task no GPU (TaskContext.resources() holds "
            "no 'gpu' address), and the job does not fall back to the CPU: check that the "
            f"executors have GPUs ({EXECUTOR_GPUS}, a discovery script) and that {TASK_GPUS} "
            "is set"
        )
    address = str(addresses[0]).strip()
    if not re.fullmatch(r"[0-9]+", address):
        raise ValueError(
            f"lookalike: --gpus, but the GPU Spark gave this task has the address {address!r}, "
            "not a CUDA device number: the GPU discovery script must print device indices "
            '(e.g. {"name": "gpu", "addresses": ["0", "1"]}, as Spark\'s getGpusResources.sh '
            "does)"
        )
    return f"cuda:{int(address)}"


def embed_command(binary, model_dir, device, threads, decode_threads, embed_args, out, mode):
    """The command line of one task's `lookalike embed`. The global options (`--device` among
    them) come before the subcommand; without a device it is the command line of a CPU job,
    with no `--device` at all."""
    argv = [binary]
    if model_dir:
        argv += ["--model-dir", model_dir]
    if device:
        argv += ["--device", device]
    argv += ["--threads", str(threads), "--quiet", "embed"]
    argv += embed_args
    argv += ["--out", out, "--json", "--decode-threads", str(decode_threads)]
    argv += mode
    return argv


def run_embed(cfg, partition, mode, feed):
    """Runs `lookalike embed` for one task; `feed(stdin)` writes its input (a tar stream in
    bytes mode) or None when the input is a manifest file named in cfg. Returns the task's
    summary; raises (so that Spark retries the task) when the run itself failed."""
    from pyspark import TaskContext

    ctx = TaskContext.get()
    # TaskContext.cpus() is spark.task.cpus (or the task's resource profile): checked with
    # spark.task.cpus=2, it returns 2 in every task.
    cpus = max(1, ctx.cpus() if ctx is not None else 1)
    threads = cfg["threads"] or cpus
    decode_threads = cfg["decode_threads"] or cpus
    where = f"task for partition {partition} on {socket.gethostname()}"
    try:
        device = task_device(cfg.get("gpus"), ctx.resources() if ctx is not None else {})
    except ValueError as e:
        raise RuntimeError(f"{e} ({where})") from None
    binary, model_dir, path = resolve_tools(cfg)

    argv = embed_command(
        binary, model_dir, device, threads, decode_threads, cfg["embed_args"], cfg["out"], mode
    )
    env = dict(os.environ, PATH=path)
    env.pop("LOOKALIKE_LOG", None)

    started = time.time()
    with tempfile.TemporaryFile() as out, tempfile.NamedTemporaryFile(suffix=".stderr") as err:
        child = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if feed else subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=env,
            preexec_fn=parent_death_signal(),
        )
        sent = {"files": 0, "bytes": 0}
        broken = None
        if feed:
            try:
                feed(child.stdin, sent)
            except (BrokenPipeError, ConnectionResetError) as e:
                broken = e  # the child died or stopped reading: its exit status says why
            except BaseException:
                # Spark could not read a file, or the task is being killed: no shard.
                child.kill()
                child.wait()
                raise
            finally:
                try:
                    child.stdin.close()
                except (BrokenPipeError, ConnectionResetError):
                    pass
        code = child.wait()
        err.flush()
        stderr = tail(err.name)
        out.seek(0)
        stdout = out.read().decode("utf-8", "replace")

    if code != 0:
        raise RuntimeError(
            f"lookalike embed {describe_exit(code)} ({where}, after {sent['files']} files sent)\n"
            f"command: {' '.join(argv)}\n--- its stderr (last lines) ---\n{stderr}"
        )
    lines = [line for line in stdout.splitlines() if line.strip()]
    try:
        report = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise RuntimeError(
            f"lookalike embed printed no JSON summary ({where})\nstdout: {stdout[-2000:]}\n"
            f"stderr: {stderr}"
        ) from None
    if broken is not None and not report.get("skipped"):
        raise RuntimeError(
            f"lookalike embed stopped reading its input ({where}): {broken}\n{stderr}"
        )
    if stderr:
        print(f"lookalike embed ({where}) said:\n{stderr[-2000:]}", file=sys.stderr)
    shard = report.get("shard")
    return {
        "partition": partition,
        "shard": os.path.basename(shard) if shard else None,
        "files": report.get("files", 0),
        "rows": report.get("rows", 0),
        "images": report.get("images", 0),
        "videos": report.get("videos", 0),
        "frames": report.get("frames", 0),
        "failed": report.get("failed", 0),
        "skipped": bool(report.get("skipped", False)),
        "seconds": report.get("seconds"),
        "task_seconds": round(time.time() - started, 3),
        "bytes_sent": sent["bytes"],
        "host": socket.gethostname(),
        "attempt": ctx.attemptNumber() if ctx is not None else 0,
        "threads": threads,
        "decode_threads": decode_threads,
        "device": device or "cpu",
    }


def empty_task(partition):
    return {
        "partition": partition,
        "shard": None,
        "files": 0,
        "rows": 0,
        "images": 0,
        "videos": 0,
        "frames": 0,
        "failed": 0,
        "skipped": True,
        "seconds": 0.0,
        "task_seconds": 0.0,
        "bytes_sent": 0,
        "host": socket.gethostname(),
        "attempt": 0,
    }


def embed_bytes_partition(cfg, exclude):
    """The task of bytes mode: this partition's rows of the binaryFile scan (path, length,
    mtime_us, content), less the keys in `exclude` (files some shard already holds, only when
    the input changed since the run that made them), as one tar stream to `embed --tar -`."""

    def task(partition, rows):
        skip = exclude.value.get(partition, ()) if exclude is not None else ()
        seen = set(skip)
        rows = iter(rows)

        def wanted():
            for row in rows:
                key = key_of(row.path)
                if key in seen:
                    continue
                seen.add(key)
                yield key, row

        pending = wanted()
        first = next(pending, None)
        if first is None:
            yield empty_task(partition)
            return

        def feed(stdin, sent):
            # Stream mode ('w|'): members are written as they come, nothing is seeked or kept.
            with tarfile.open(fileobj=stdin, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for key, row in _chain(first, pending):
                    content = row.content
                    path = local_path(row.path)
                    mtime_ns = None
                    if path is not None:
                        try:
                            # Hadoop's local file system gives milliseconds; `index` stores
                            # nanoseconds, and a re-index compares them exactly.
                            mtime_ns = os.stat(path).st_mtime_ns
                        except OSError:
                            pass
                    if mtime_ns is None:
                        mtime_ns = row.mtime_us * 1000
                    info = tarfile.TarInfo(key)  # verbatim: the key stored in the shard
                    info.size = len(content)
                    info.mode = 0o644
                    info.type = tarfile.REGTYPE
                    info.mtime = mtime_ns // 10**9
                    # tarfile keeps a PAX record given here over the rounded header value.
                    info.pax_headers = {"mtime": pax_seconds(mtime_ns)}
                    tar.addfile(info, io.BytesIO(content))
                    sent["files"] += 1
                    sent["bytes"] += len(content)

        yield run_embed(cfg, partition, ["--tar", "-"], feed)

    return task


def _chain(first, rest):
    yield first
    yield from rest


def embed_paths_partition(cfg):
    """The task of paths mode: this partition's (shard number, key) pairs, as a manifest.
    The manifest is written whole to a file before `embed` starts, so that an embed process
    can never take a manifest cut short by a killed task for a whole one."""

    def task(partition, rows):
        keys = sorted({key for _, key in rows})
        if not keys:
            yield empty_task(partition)
            return
        with tempfile.NamedTemporaryFile("w", suffix=".manifest", encoding="utf-8") as manifest:
            manifest.write("".join(key + "\n" for key in keys))
            manifest.flush()
            yield run_embed(cfg, partition, ["--manifest", manifest.name, "--skip-existing"], None)

    return task


# --------------------------------------------------------------------------------------------
# Driver side.
# --------------------------------------------------------------------------------------------


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="spark-submit spark/lookalike_spark.py",
        description="Embed images and videos into lookalike vector shards on Spark "
        "(then: lookalike import OUT). See docs/spark.md.",
    )
    p.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="folders or files, as Spark paths (bytes mode: hdfs://, s3a://, file:, "
        "or the default file system; paths mode: local paths every executor sees)",
    )
    p.add_argument(
        "--out", required=True, help="the folder the shards go to: a path every executor can write"
    )
    p.add_argument(
        "--input-mode",
        choices=("bytes", "paths"),
        default="bytes",
        help="bytes: Spark reads the files and streams them to the tasks (default); "
        "paths: the tasks read them from a mount every executor sees",
    )
    p.add_argument(
        "--manifest",
        action="append",
        default=[],
        metavar="FILE",
        help="paths mode: a text file (any Spark path) of local paths, one a line",
    )
    p.add_argument("--binary", help="the lookalike executable to ship to the executors")
    p.add_argument("--model-dir", help="the model folder to ship to the executors (as a tar)")
    p.add_argument(
        "--ffmpeg", help="an ffmpeg executable to ship (videos need one on the executors)"
    )
    p.add_argument(
        "--files-per-shard",
        type=int,
        default=500,
        help="paths mode: files per task and shard (default 500)",
    )
    p.add_argument(
        "--partition-bytes",
        type=parse_bytes,
        help=f"bytes mode: bytes of files per task ({MAX_PARTITION_BYTES}; default 1g)",
    )
    p.add_argument(
        "--max-file-bytes",
        type=parse_bytes,
        default=SPARK_MAX_FILE_BYTES,
        help="bytes mode: larger files are left out and listed in the job record "
        "(default and most: 2 GiB - 1, what binaryFile can read; embed those in paths mode)",
    )
    p.add_argument(
        "--threads", type=int, help="ONNX Runtime threads per task (default: spark.task.cpus)"
    )
    p.add_argument(
        "--decode-threads", type=int, help="decoders per task (default: spark.task.cpus)"
    )
    p.add_argument(
        "--gpus",
        action="store_true",
        help="run each task on a GPU of its own: ask Spark for GPU executors "
        f"({EXECUTOR_GPUS}, see --executor-gpus; {TASK_GPUS}=1) and run "
        "`lookalike --device cuda:N embed` with N the GPU Spark gave the task; a task given "
        "no GPU fails. Settings given with spark-submit --conf are kept. Not in local mode "
        "(local[N] schedules no GPUs: use local-cluster[...] or a cluster)",
    )
    p.add_argument(
        "--executor-gpus",
        type=int,
        metavar="N",
        help=f"with --gpus: GPUs per executor ({EXECUTOR_GPUS}; default 1), so up to N tasks "
        "at a time on an executor",
    )
    p.add_argument(
        "--gpu-discovery-script",
        metavar="PATH",
        help=f"with --gpus: the script that lists an executor's GPUs ({GPU_DISCOVERY_SCRIPT}), "
        "a path on the executors' machines. Spark ships one, "
        "examples/src/main/scripts/getGpusResources.sh (it asks nvidia-smi); YARN and "
        "Kubernetes can find the GPUs without one, a standalone worker is given its own "
        "(spark.worker.resource.gpu.*)",
    )
    for flag in (
        "--model",
        "--pooling",
        "--scales",
        "--whiten",
        "--query-expansion",
        "--frame-interval",
    ):
        p.add_argument(flag, help="passed to lookalike embed")
    args = p.parse_args(argv)
    if not args.inputs and not args.manifest:
        p.error("nothing to embed: give INPUT folders or --manifest")
    if args.manifest and args.input_mode != "paths":
        p.error("--manifest lists local paths: it needs --input-mode paths")
    if args.files_per_shard < 1:
        p.error("--files-per-shard must be at least 1")
    if not 0 < args.max_file_bytes <= SPARK_MAX_FILE_BYTES:
        p.error(f"--max-file-bytes must be between 1 and {SPARK_MAX_FILE_BYTES}")
    if not args.gpus:
        for flag in ("executor_gpus", "gpu_discovery_script"):
            if getattr(args, flag) is not None:
                p.error(f"--{flag.replace('_', '-')} needs --gpus")
    if args.executor_gpus is not None and args.executor_gpus < 1:
        p.error("--executor-gpus must be at least 1")
    return args


def gpu_settings(executor_gpus, discovery_script, submitted):
    """The Spark settings --gpus adds to the session, as {key: value}: GPUs per executor
    (`executor_gpus`, default 1), one GPU per task, and the discovery script when one is
    given; a key spark-submit already sets (`submitted`: its --conf and spark-defaults.conf,
    as a dict) is left as it is, so that `--conf spark.task.resource.gpu.amount=0.5` still
    lets two tasks share a GPU. Raises ValueError where GPUs cannot be had: a local master
    (its tasks would wait for a GPU forever), or an option that contradicts a --conf."""
    master = submitted.get("spark.master", "local[*]")
    if master == "local" or master.startswith("local["):
        raise ValueError(
            f"Spark's local mode ({master}) schedules no GPUs, and its tasks would wait for one "
            "forever: run on a cluster (standalone, YARN, Kubernetes) or, on one machine, with "
            "--master 'local-cluster[1,CORES,MEMORY_MB]' and workers given GPUs "
            "(spark.worker.resource.gpu.amount, spark.worker.resource.gpu.discoveryScript)"
        )
    wanted = {
        EXECUTOR_GPUS: (str(executor_gpus) if executor_gpus is not None else None, "1"),
        TASK_GPUS: (None, "1"),
        GPU_DISCOVERY_SCRIPT: (discovery_script, None),
    }
    flags = {EXECUTOR_GPUS: "--executor-gpus", GPU_DISCOVERY_SCRIPT: "--gpu-discovery-script"}
    settings = {}
    for key, (given, default) in wanted.items():
        if key in submitted:
            if given is not None and given != submitted[key]:
                raise ValueError(
                    f"{flags[key]} {given} contradicts --conf {key}={submitted[key]}: "
                    "give one of them"
                )
        elif given is not None or default is not None:
            settings[key] = given if given is not None else default
    return settings


def submitted_conf():
    """What spark-submit was given (--master, --conf, spark-defaults.conf), read before the
    session starts: Spark reads its resource settings once, when the SparkContext starts.
    spark-submit hands them to the JVM it starts; SparkConf() reads them there, once PySpark
    is connected to that JVM (without spark-submit, PySpark starts one)."""
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()
    return dict(SparkConf().getAll())


def output_folder(out):
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", out) and not out.startswith("file:"):
        sys.exit(
            f"--out {out}: lookalike embed writes its shard with plain file I/O, so the output "
            "folder must be a local path every executor can write (a shared mount on a cluster)"
        )
    path = local_path(out) if out.startswith("file:") else out
    path = os.path.abspath(path)
    os.makedirs(path, exist_ok=True)
    return path


def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def write_record(out, record):
    """OUT/_lookalike_job.json, replaced atomically (Spark's and lookalike's shard readers
    leave names starting with `_` or `.` alone)."""
    target = os.path.join(out, JOB_RECORD)
    temp = os.path.join(out, f".{JOB_RECORD}.tmp-{os.getpid()}")
    with open(temp, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
        f.write("\n")
    os.replace(temp, target)


def read_record(out):
    try:
        with open(os.path.join(out, JOB_RECORD), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def existing_shards(out):
    return sorted(
        os.path.join(out, name)
        for name in os.listdir(out)
        if name.endswith(".parquet")
        and not name.startswith((".", "_"))
        and os.path.isfile(os.path.join(out, name))
    )


def remove_stale_temporaries(out):
    """Temporary shards of embed processes that were killed (SIGKILL leaves them): hidden
    `.lookalike-shard-*.tmp` files. Nothing else writes into OUT while the job starts."""
    removed = 0
    for name in os.listdir(out):
        if name.startswith(".lookalike-shard-") and name.endswith(".tmp"):
            try:
                os.remove(os.path.join(out, name))
                removed += 1
            except OSError:
                pass
    return removed


def pack_models(model_dir, model, workdir):
    """A tar of the model folder's contents, named lookalike-models.tar: only the network
    asked for (efficientnet-lite0 by default) and ONNX Runtime, not the rest of the cache.
    Not compressed: the weights are floats, which gzip shrinks by a third at the cost of
    about 2 s per job, more than shipping the difference costs."""
    wanted = "efficientnet-" + (model or "lite0")
    entries = sorted(os.listdir(model_dir))
    chosen = [e for e in entries if e == wanted or e.startswith("onnxruntime-")]
    if wanted not in chosen:
        sys.exit(f"--model-dir {model_dir} holds no {wanted}/: run `lookalike model fetch` first")
    archive = os.path.join(workdir, MODELS_NAMES[1])
    with tarfile.open(archive, "w") as tar:
        for entry in chosen:
            tar.add(os.path.join(model_dir, entry), arcname=entry)
    return archive


def already_shipped(sc, name):
    """True when spark-submit --files/--archives already ships something named `name`."""
    names = []
    for key in (
        "spark.files",
        "spark.archives",
        "spark.yarn.dist.files",
        "spark.yarn.dist.archives",
    ):
        for item in filter(None, sc.getConf().get(key, "").split(",")):
            base, _, alias = item.partition("#")
            names.append(alias or base.rstrip("/").rsplit("/", 1)[-1])
    return name in names


def main(argv):
    args = parse_args(argv)
    out = output_folder(args.out)

    from pyspark import StorageLevel
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    builder = SparkSession.builder.appName("lookalike embed")
    if args.gpus:
        try:
            gpu_conf = gpu_settings(
                args.executor_gpus, args.gpu_discovery_script, submitted_conf()
            )
        except ValueError as e:
            sys.exit(f"--gpus: {e}")
        for key, value in gpu_conf.items():
            builder = builder.config(key, value)
    spark = builder.getOrCreate()
    sc = spark.sparkContext
    conf = sc.getConf()
    if not args.gpus and conf.contains(TASK_GPUS):
        print(
            f"lookalike: the tasks are given GPUs ({TASK_GPUS}) but run lookalike on the CPU: "
            "pass --gpus to run it on them"
        )
    local = sc.master.startswith("local")
    started = time.time()
    previous = read_record(out)
    stale = remove_stale_temporaries(out)

    # --- what the tasks run ------------------------------------------------------------------
    embed_args = []
    for flag in ("model", "pooling", "scales", "whiten", "query_expansion", "frame_interval"):
        value = getattr(args, flag)
        if value is not None:
            embed_args += ["--" + flag.replace("_", "-"), str(value)]
    cfg = {
        "out": out,
        "embed_args": embed_args,
        "threads": args.threads,
        "decode_threads": args.decode_threads,
        "binary_path": None,
        "binary_name": BINARY_NAME,
        "model_path": None,
        "model_names": list(MODELS_NAMES),
        "max_file_bytes": args.max_file_bytes,
        "gpus": args.gpus,
    }
    workdir = tempfile.mkdtemp(prefix="lookalike-spark-")
    atexit.register(shutil.rmtree, workdir, True)
    if args.binary:
        binary = os.path.abspath(args.binary)
        if not os.access(binary, os.X_OK):
            sys.exit(f"--binary {args.binary}: not an executable file")
        cfg["binary_name"] = os.path.basename(binary)
        if already_shipped(sc, cfg["binary_name"]):
            print(f"{cfg['binary_name']} comes with spark-submit --files: --binary not shipped")
        else:
            sc.addFile(binary)
    elif local and not shipped(BINARY_NAME) and not already_shipped(sc, BINARY_NAME):
        # One machine: the driver's own `lookalike`, if it has one, is the executors' too.
        cfg["binary_path"] = shutil.which(BINARY_NAME)
    if args.model_dir:
        if any(already_shipped(sc, name) for name in MODELS_NAMES):
            print("lookalike-models comes with spark-submit --archives: --model-dir not shipped")
        else:
            sc.addArchive(pack_models(os.path.abspath(args.model_dir), args.model, workdir))
    if args.ffmpeg:
        ffmpeg = os.path.abspath(args.ffmpeg)
        if os.path.basename(ffmpeg) != FFMPEG_NAME:
            os.symlink(ffmpeg, os.path.join(workdir, FFMPEG_NAME))
            ffmpeg = os.path.join(workdir, FFMPEG_NAME)
        sc.addFile(ffmpeg)

    record = {
        "job": "lookalike embed on Spark",
        "status": "running",
        "started": now(),
        "input_mode": args.input_mode,
        "inputs": args.inputs,
        "manifests": args.manifest,
        "out": out,
        "embed_args": embed_args,
        "spark": {
            "version": spark.version,
            "master": sc.master,
            "app_id": sc.applicationId,
            "default_parallelism": sc.defaultParallelism,
            "task_cpus": int(conf.get("spark.task.cpus", "1")),
        },
        "device": "gpu" if args.gpus else "cpu",
        "stale_temporaries_removed": stale,
    }
    if args.gpus:
        # The GPU settings the session runs with (set by --gpus or kept from --conf).
        record["spark"]["gpu"] = {
            key: conf.get(key, None) for key in (EXECUTOR_GPUS, TASK_GPUS, GPU_DISCOVERY_SCRIPT)
        }
        print(
            f"lookalike: the tasks run on GPUs ({TASK_GPUS}={conf.get(TASK_GPUS, None)}, "
            f"{EXECUTOR_GPUS}={conf.get(EXECUTOR_GPUS, None)})"
        )

    # --- how files are grouped into tasks -----------------------------------------------------
    partitioning = {}
    if args.input_mode == "bytes":
        before = previous.get("partitioning", {}) if previous.get("input_mode") == "bytes" else {}
        defaults = {
            MAX_PARTITION_BYTES: args.partition_bytes or DEFAULT_PARTITION_BYTES,
            OPEN_COST: None,  # Spark's (4 MB): it bounds the files per task for tiny files
            MIN_PARTITIONS: sc.defaultParallelism,
        }
        for key, default in defaults.items():
            if key == MAX_PARTITION_BYTES and args.partition_bytes:
                value = args.partition_bytes
            elif conf.contains(key):
                value = parse_bytes(conf.get(key))
            elif key in before:
                value = before[key]
            else:
                value = default
            if value is not None:
                spark.conf.set(key, str(value))
                partitioning[key] = value
            else:
                partitioning[key] = parse_bytes(spark.conf.get(key))
        if not conf.contains("spark.sql.files.ignoreMissingFiles"):
            # A file deleted between the listing and its task is left out (checked: without
            # this, the task fails with FAILED_READ_FILE.FILE_NOT_EXIST, and so does the job).
            spark.conf.set("spark.sql.files.ignoreMissingFiles", "true")
    else:
        partitioning["files_per_shard"] = args.files_per_shard
    record["partitioning"] = partitioning
    write_record(out, record)

    # --- the listing ----------------------------------------------------------------------------
    glob = case_insensitive_glob(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)
    inputs = list(args.inputs)
    if args.input_mode == "paths":
        # The tasks read local paths: list the local file system, whatever fs.defaultFS is.
        inputs = [
            "file://" + os.path.abspath(i) if "://" not in i and not i.startswith("file:") else i
            for i in inputs
        ]
    keyed_schema = T.StructType(
        [
            T.StructField("key", T.StringType()),
            T.StructField("pid", T.IntegerType()),
            T.StructField("length", T.LongType()),
        ]
    )
    base = None
    frames = []
    too_large = []
    if inputs:
        # recursiveFileLookup walks sub-folders; pathGlobFilter drops other kinds while
        # listing. Like every Spark file source, the listing skips names that start with `_`
        # or `.` (checked: `_x.jpg`, `.x.jpg` and everything under `_dir/` or `.dir/`),
        # where `lookalike index` would take them.
        reader = (
            spark.read.format("binaryFile")
            .option("recursiveFileLookup", "true")
            .option("pathGlobFilter", glob)
        )
        base = reader.load(inputs)
        listing = base.select("path", "length", F.spark_partition_id().alias("pid"))
        if args.input_mode == "paths":
            # The listing's partitions follow file bytes (128 MB each by default: 105 of them
            # for 3,000 photos), each a Python task to key: paths mode needs no scan
            # partitions, so a few do (9 s less for those 3,000 photos on 2 cores).
            listing = listing.coalesce(sc.defaultParallelism)
        frames.append(
            spark.createDataFrame(
                listing.rdd.map(lambda r: (key_of(r.path), r.pid, r.length)), keyed_schema
            )
        )
    if args.manifest:
        cwd = os.getcwd()
        lines = spark.read.text(args.manifest).rdd.map(lambda r: r.value.rstrip("\r"))
        lines = lines.filter(lambda line: line.strip() and not line.startswith("#"))
        keys = lines.map(lambda line: (manifest_key(line, cwd), -1, -1))
        frames.append(spark.createDataFrame(keys, keyed_schema))
    keyed = frames[0]
    for more in frames[1:]:
        keyed = keyed.unionByName(more)
    keyed = keyed.persist(StorageLevel.MEMORY_AND_DISK)

    # --- what is already done -------------------------------------------------------------
    shards = existing_shards(out)
    done = None
    if shards:
        # Spark's own Parquet reader, on the shard files (a re-run is the check that Spark
        # reads them). Only `path` is read: Parquet is columnar.
        done = (
            spark.read.parquet(*["file://" + s for s in shards])
            .select(F.col("path").alias("key"))
            .distinct()
        )
        identities = (
            spark.read.parquet(*["file://" + s for s in shards])
            .select("model", "descriptor")
            .distinct()
            .collect()
        )
        if len(identities) > 1:
            sys.exit(
                f"{out} holds shards of {len(identities)} different models/descriptors: "
                + "; ".join(f"{r.model} {r.descriptor}" for r in identities)
            )

    if args.input_mode == "bytes" and done is None:
        # A first run needs no keys on the driver (every partition runs, and each task names
        # its files itself): count on the listing alone, in the JVM, rather than pay a pass
        # through Python workers.
        listed = base.count()
        too_large = [
            key_of(r.path)
            for r in base.filter(F.col("length") > args.max_file_bytes).select("path").collect()
        ]
    else:
        listed = keyed.count()
    if args.input_mode == "bytes" and done is not None:
        too_large = [
            r.key
            for r in keyed.filter(F.col("length") > args.max_file_bytes).select("key").collect()
        ]
        keyed = keyed.filter(F.col("length") <= args.max_file_bytes)
    record.update(
        listed=listed,
        shards_before=len(shards),
        too_large=too_large[:1000],
        too_large_count=len(too_large),
    )
    if too_large:
        print(
            f"left out {len(too_large)} files over {args.max_file_bytes} bytes "
            f"(embed them with --input-mode paths), e.g. {too_large[0]}"
        )

    embedding_started = time.time()
    if args.input_mode == "bytes":
        tasks = run_bytes(spark, sc, F, base, keyed, done, cfg, record)
    else:
        tasks = run_paths(spark, sc, F, keyed, done, cfg, record, args.files_per_shard)
    embedding_seconds = time.time() - embedding_started

    # --- report -----------------------------------------------------------------------------
    tasks.sort(key=lambda t: t["partition"])
    totals = {
        k: sum(t[k] or 0 for t in tasks)
        for k in ("files", "rows", "images", "videos", "frames", "failed", "bytes_sent")
    }
    totals["tasks"] = len(tasks)
    totals["shards_written"] = sum(1 for t in tasks if t["shard"] and not t["skipped"])
    totals["embed_seconds"] = round(sum(t["seconds"] or 0 for t in tasks), 3)
    wall = time.time() - started
    totals["wall_seconds"] = round(wall, 3)
    # Where the time went: starting the session (and shipping the binary and model), finding
    # what to do (listing, the shards already there), running the tasks.
    totals["session_seconds"] = round(started - SCRIPT_STARTED, 3)
    totals["planning_seconds"] = round(embedding_started - started, 3)
    totals["embedding_seconds"] = round(embedding_seconds, 3)
    totals["files_per_second"] = round(totals["files"] / wall, 2) if wall > 0 else None
    record.update(
        status="done",
        finished=now(),
        tasks=tasks,
        totals=totals,
        shards_after=len(existing_shards(out)),
    )
    write_record(out, record)

    print(
        f"{'partition':>9}  {'shard':<31} {'files':>6} {'frames':>6} {'failed':>6} {'seconds':>8}"
    )
    for t in tasks:
        if t["shard"] or t["files"]:
            print(
                f"{t['partition']:>9}  {t['shard'] or '-':<31} {t['files']:>6} {t['frames']:>6} "
                f"{t['failed']:>6} {t['seconds'] or 0:>8.1f}"
            )
    print(
        f"lookalike: {listed} files listed, {record['todo']} to embed, {totals['files']} embedded "
        f"in {totals['shards_written']} shards ({totals['frames']} video frames, "
        f"{totals['failed']} failed) in {wall:.1f} s; {record['shards_after']} shards in {out}"
    )
    print(f"record: {os.path.join(out, JOB_RECORD)}; next: lookalike import {out}")
    spark.stop()


def run_bytes(spark, sc, F, base, keyed, done, cfg, record):
    """Runs the binaryFile scan's own partitions, or on a re-run only those holding files no
    shard has: a partition whose shard exists is not read at all."""
    # Filtering on `length` happens in the scan, before any content is read (binaryFile pushes
    # length/modificationTime filters down: checked on a 3 GB sparse file, which fails as soon
    # as its content is read), and leaves the grouping of files into partitions as it is.
    base = base.filter(F.col("length") <= cfg["max_file_bytes"])
    partitions = base.rdd.getNumPartitions()
    if done is None:
        todo_pids = list(range(partitions))
        todo = record["listed"] - record["too_large_count"]
        exclude = None
    else:
        missing = keyed.join(done, "key", "left_anti")
        per_pid = {r.pid: r["count"] for r in missing.groupBy("pid").count().collect()}
        todo_pids = sorted(per_pid)
        todo = sum(per_pid.values())
        # Files a shard already holds in a partition that must run anyway. With the input
        # unchanged since the first run there are none (a partition's shard is all or
        # nothing); when files were added the grouping moves, and these are left out of the
        # stream (read by the scan, not embedded twice).
        held = (
            (
                keyed.join(done, "key", "left_semi")
                .filter(F.col("pid").isin(todo_pids))
                .select("pid", "key")
                .collect()
            )
            if todo_pids
            else []
        )
        table = {}
        for r in held:
            table.setdefault(r.pid, set()).add(r.key)
        exclude = sc.broadcast(table)
        record["held_in_todo_partitions"] = len(held)
    record.update(todo=todo, partitions=partitions, partitions_run=len(todo_pids))
    write_record(cfg["out"], record)
    print(
        f"lookalike: {record['listed']} files in {partitions} partitions; {todo} to embed in "
        f"{len(todo_pids)} tasks"
    )
    if not todo_pids:
        return []
    content = base.select(
        "path", "length", F.unix_micros("modificationTime").alias("mtime_us"), "content"
    )
    # The rows reach Python one batch at a time as the task iterates: one file's bytes at a
    # time in the stream, not the partition's.
    rdd = content.rdd.mapPartitionsWithIndex(embed_bytes_partition(cfg, exclude))
    # runJob computes only the partitions listed (checked): the others are not even read.
    return sc.runJob(rdd, lambda rows: list(rows), partitions=todo_pids)


def run_paths(spark, sc, F, keyed, done, cfg, record, per_shard):
    """Sorts every listed key, numbers them, cuts them into shards of `per_shard`, and runs
    the shards that hold files no shard has: a lost shard gets the same files as before."""
    numbered = (
        keyed.select("key")
        .distinct()
        .rdd.map(lambda r: r.key)
        .sortBy(lambda k: k)
        .zipWithIndex()
        .map(lambda kv: (kv[0], kv[1] // per_shard))
    )
    numbered = spark.createDataFrame(numbered, "key string, sid long")
    missing = numbered if done is None else numbered.join(done, "key", "left_anti")
    missing = missing.persist()
    sids = sorted(r.sid for r in missing.select("sid").distinct().collect())
    todo = missing.count()
    record.update(todo=todo, partitions=len(sids), partitions_run=len(sids))
    write_record(cfg["out"], record)
    print(
        f"lookalike: {record['listed']} files; {todo} to embed in {len(sids)} tasks "
        f"of up to {per_shard}"
    )
    if not sids:
        return []
    dense = sc.broadcast({sid: i for i, sid in enumerate(sids)})
    pairs = missing.rdd.map(lambda r: (r.sid, r.key))
    # One partition per shard: dense[sid] is in [0, n), so partitionBy's "mod n" keeps it.
    grouped = pairs.partitionBy(len(sids), lambda sid: dense.value[sid])
    return grouped.mapPartitionsWithIndex(embed_paths_partition(cfg)).collect()


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except Exception as e:
        # Record the failure next to the shards, then fail the job (non-zero exit).
        out = None
        try:
            a = parse_args(sys.argv[1:])
            out = output_folder(a.out)
            record = read_record(out)
            if record.get("status") == "running":
                record.update(status="failed", finished=now(), error=str(e)[:4000])
                write_record(out, record)
        except BaseException:
            pass
        raise

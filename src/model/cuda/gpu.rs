//! The network on an NVIDIA GPU: a [`Plan`] uploaded once, run per batch on one CUDA stream.
//! The 1x1 convolutions (nearly all the arithmetic) are cuBLAS matrix products, fp16 on the
//! tensor cores with f32 sums; the stem, the depthwise convolutions, the bias/ReLU6/residual
//! epilogues and the pooling are the small kernels of `kernels.cu`, compiled by NVRTC for the
//! GPU found. The driver, cuBLAS and NVRTC are loaded at run time (cudarc's dynamic loading):
//! the binary builds and runs without CUDA, and says which library is missing when asked for a
//! GPU it cannot reach.

use std::sync::{Arc, Mutex};

use cudarc::cublas::{result as blas, sys as blas_sys, CudaBlas};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions, Ptx};
use tracing::{debug, info};

use super::super::{ModelError, Precision};
use super::plan::{Global, Op, Plan, Pooled, Slot};

const KERNELS: &str = include_str!("kernels.cu");
/// Threads per block of the elementwise kernels.
const THREADS: u32 = 256;

/// What a pass copies back: f32 features pooled as [`Pooled::global`] says (not normalised)
/// and logits; the region vectors `[n, windows, dim]` (not normalised) when pooled; the
/// feature map as NCHW f32 per image for [`Global::Map`].
pub struct PassOutputs {
    pub features: Vec<f32>,
    pub logits: Vec<f32>,
    pub regions: Option<Vec<f32>>,
    pub feature_map: Option<Vec<f32>>,
}

/// A network resident on one GPU. `run` takes `&self`: passes are serialised on its stream.
pub struct GpuNetwork {
    plan: Plan,
    pooled: Pooled,
    device_name: String,
    max_batch: usize,
    state: Mutex<State>,
}

/// Everything on the device, and the handles that use it.
struct State {
    ctx: Arc<CudaContext>,
    /// The network's stream: kernels, matrix products, results back.
    stream: Arc<CudaStream>,
    /// Uploads: the next images are copied while the network runs on the previous ones.
    uploads: Arc<CudaStream>,
    blas: CudaBlas,
    kernels: Kernels,
    /// Per step: its weights (bytes at the layout and type the step reads) and bias.
    weights: Vec<(CudaSlice<u8>, CudaSlice<f32>)>,
    fc_weight: CudaSlice<f32>,
    fc_bias: CudaSlice<f32>,
    /// The batch's 8-bit crops (see `model::input`): a quarter of the bytes of floats to upload.
    input: CudaSlice<u8>,
    /// The plan's buffers, as bytes (their element type is the plan's precision).
    buffers: Vec<CudaSlice<u8>>,
    /// Average-pooled features (what the classifier reads).
    features: CudaSlice<f32>,
    logits: CudaSlice<f32>,
    /// GeM-pooled features, for [`Global::Gem`].
    gem: Option<CudaSlice<f32>>,
    /// The region windows (y, x, side) and the region vectors, when pooled.
    regions: Option<(CudaSlice<i32>, CudaSlice<f32>)>,
}

impl Drop for State {
    /// cuBLAS's handle is destroyed with the context current: on another thread than the one
    /// that loaded it, cudarc would panic destroying it for any device but the first.
    fn drop(&mut self) {
        if let Err(e) = self.ctx.bind_to_thread() {
            tracing::warn!("releasing the GPU: {e}");
        }
    }
}

struct Kernels {
    stem: CudaFunction,
    depthwise: CudaFunction,
    bias_act: CudaFunction,
    average_pool: CudaFunction,
    gem_pool: CudaFunction,
    region_pool: CudaFunction,
    /// `bias_act` on f32 (the logits), whatever the precision.
    bias_f32: CudaFunction,
}

/// Fails with the names of the CUDA libraries that cannot be loaded (cudarc would panic on
/// the first call into a missing one).
fn check_libraries() -> Result<(), ModelError> {
    // SAFETY: each only tries to dlopen the library by its usual names.
    let found = unsafe {
        [
            (
                "libcuda (the NVIDIA driver)",
                cudarc::driver::sys::is_culib_present(),
            ),
            ("libcublas", cudarc::cublas::sys::is_culib_present()),
            ("libnvrtc", cudarc::nvrtc::sys::is_culib_present()),
        ]
    };
    let missing: Vec<&str> = found
        .iter()
        .filter(|(_, present)| !present)
        .map(|(name, _)| *name)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(ModelError::Cuda(format!(
        "cannot load {} (CUDA 13 or newer): install the NVIDIA driver and CUDA's cuBLAS and \
         NVRTC libraries (e.g. the nvidia-cublas and nvidia-cuda-nvrtc Python wheels) and put \
         their lib folders on LD_LIBRARY_PATH, or run on the CPU (--device cpu)",
        missing.join(", ")
    )))
}

/// The CUDA libraries this process loaded, by path (which of several installed copies the
/// dynamic loader picked).
fn loaded_libraries() -> Vec<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let mut paths: Vec<String> = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .filter(|path| {
            ["libcuda.", "libcublas", "libnvrtc"]
                .iter()
                .any(|l| path.contains(l))
        })
        .map(str::to_owned)
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

fn cuda_error(what: &str) -> impl Fn(cudarc::driver::DriverError) -> ModelError + '_ {
    move |e| ModelError::Cuda(format!("{what}: {e}"))
}

fn blas_error(what: &str) -> impl Fn(blas::CublasError) -> ModelError + '_ {
    move |e| ModelError::Cuda(format!("{what}: {e}"))
}

/// The weights `values` as the bytes of `precision`'s type.
fn stored_bytes(values: &[f32], precision: Precision) -> Vec<u8> {
    match precision {
        Precision::Fp32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Precision::Fp16 => values
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect(),
    }
}

impl GpuNetwork {
    /// Uploads `plan` to CUDA device `ordinal` and compiles the kernels for it, with buffers
    /// for passes of up to `batch` images (fewer if the device's memory is smaller); each pass
    /// pools as `pooled` says.
    pub fn load(
        plan: Plan,
        ordinal: usize,
        pooled: Pooled,
        batch: usize,
    ) -> Result<GpuNetwork, ModelError> {
        check_libraries()?;
        let count = CudaContext::device_count().map_err(cuda_error("counting CUDA devices"))?;
        if ordinal >= count.max(0) as usize {
            return Err(ModelError::Cuda(format!(
                "no CUDA device {ordinal}: {count} found"
            )));
        }
        let ctx = CudaContext::new(ordinal).map_err(cuda_error("opening the CUDA device"))?;
        // The thread that waits for the GPU sleeps instead of spinning (CUDA spins when it
        // has a core per context): on a box bound by decoding, a spinning core is one decoder
        // fewer.
        ctx.set_blocking_synchronize()
            .map_err(cuda_error("setting the CUDA context's flags"))?;
        // SAFETY: the two streams share one buffer, the input, and order it themselves: each
        // upload is joined (an event) before the network reads it, and a pass ends with a
        // synchronisation before the next one uploads. Everything else lives on the network's
        // stream, so cudarc's cross-stream event tracking has nothing to order.
        unsafe { ctx.disable_event_tracking() };
        let device_name = ctx.name().map_err(cuda_error("naming the device"))?;
        let (major, minor) = ctx
            .compute_capability()
            .map_err(cuda_error("reading the compute capability"))?;
        let stream = ctx.new_stream().map_err(cuda_error("creating a stream"))?;
        let uploads = ctx.new_stream().map_err(cuda_error("creating a stream"))?;
        let blas = CudaBlas::new(stream.clone()).map_err(blas_error("starting cuBLAS"))?;
        let kernels = Kernels::compile(&ctx, (major, minor), plan.precision)?;

        let total_mem = ctx
            .total_mem()
            .map_err(cuda_error("reading the memory size"))?;
        // Half the device memory at most, and every tensor under 2^31 values (the kernels'
        // 32-bit indices).
        let largest = plan
            .buffer_lens
            .iter()
            .copied()
            .chain([plan.network.activation_len(0)])
            .max()
            .unwrap_or(1);
        let mut max_batch = batch.max(1);
        while max_batch > 1
            && (plan.activation_bytes(max_batch) > total_mem / 2
                || largest * max_batch > i32::MAX as usize)
        {
            max_batch /= 2;
        }
        let upload_f32 = |values: &[f32]| {
            stream
                .clone_htod(values)
                .map_err(cuda_error("uploading weights"))
        };
        let upload_bytes = |bytes: &[u8]| {
            stream
                .clone_htod(bytes)
                .map_err(cuda_error("uploading weights"))
        };
        let mut weights = Vec::with_capacity(plan.steps.len());
        for step in &plan.steps {
            let bytes = match step.op {
                // The matrix products read weights at the activations' type; the other
                // kernels read f32 weights.
                Op::Pointwise => stored_bytes(&step.weight, plan.precision),
                Op::Stem | Op::Depthwise => stored_bytes(&step.weight, Precision::Fp32),
            };
            let bias = &plan.network.convs[step.conv].bias;
            weights.push((upload_bytes(&bytes)?, upload_f32(bias)?));
        }
        let fc_weight = upload_f32(&plan.network.fc_weight)?;
        let fc_bias = upload_f32(&plan.network.fc_bias)?;
        let alloc = |bytes: usize| {
            stream
                .alloc_zeros::<u8>(bytes.max(1))
                .map_err(cuda_error("allocating activations"))
        };
        let buffers = plan
            .buffer_lens
            .iter()
            .map(|&len| alloc(len * max_batch * plan.precision.bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        let alloc_f32 = |len: usize| {
            stream
                .alloc_zeros::<f32>(len.max(1))
                .map_err(cuda_error("allocating activations"))
        };
        let net = &plan.network;
        let input = alloc(max_batch * net.activation_len(0))?;
        let features = alloc_f32(max_batch * net.feature_dim())?;
        let logits = alloc_f32(max_batch * net.fc_bias.len())?;
        let gem = match pooled.global {
            Global::Gem(_) => Some(alloc_f32(max_batch * net.feature_dim())?),
            Global::Average | Global::Map => None,
        };
        let regions = match &pooled.regions {
            Some(r) => {
                let windows: Vec<i32> = r.windows.iter().flatten().map(|&v| v as i32).collect();
                let windows = stream
                    .clone_htod(&windows)
                    .map_err(cuda_error("uploading the region windows"))?;
                let vectors = alloc_f32(max_batch * r.windows.len() * net.feature_dim())?;
                Some((windows, vectors))
            }
            None => None,
        };
        // The zeroing and the weight uploads above are on the network's stream: done before
        // the other stream writes the input.
        stream
            .synchronize()
            .map_err(cuda_error("uploading weights"))?;
        info!("CUDA libraries: {}", loaded_libraries().join(", "));
        info!(
            "{} on {device_name} (cuda:{ordinal}, compute {major}.{minor}), {} at \
             {}x{}, batches of up to {max_batch}",
            net.kind, plan.precision, net.input_size, net.input_size
        );
        let state = State {
            ctx,
            stream,
            uploads,
            blas,
            kernels,
            weights,
            fc_weight,
            fc_bias,
            input,
            buffers,
            features,
            logits,
            gem,
            regions,
        };
        Ok(GpuNetwork {
            plan,
            pooled,
            device_name,
            max_batch,
            state: Mutex::new(state),
        })
    }

    /// The GPU's name, as the driver gives it.
    pub fn device_name(&self) -> &str {
        &self.device_name
    }

    /// Images per pass; [`run`](Self::run) splits larger batches.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Runs `n` images of `batch`, their 8-bit crops end to end (see `model::input`).
    pub fn run(&self, batch: &[u8], n: usize) -> Result<PassOutputs, ModelError> {
        let per_image = self.plan.network.activation_len(0);
        let mut state = self
            .state
            .lock()
            .map_err(|_| ModelError::Cuda("a thread panicked during inference".into()))?;
        let mut out = PassOutputs {
            features: Vec::with_capacity(n * self.plan.network.feature_dim()),
            logits: Vec::with_capacity(n * self.plan.network.fc_bias.len()),
            regions: self.pooled.regions.as_ref().map(|_| Vec::new()),
            feature_map: (self.pooled.global == Global::Map).then(Vec::new),
        };
        for (chunk, images) in batch
            .chunks(self.max_batch * per_image)
            .map(|c| (c, c.len() / per_image))
        {
            state.pass(&self.plan, &self.pooled, chunk, images, &mut out)?;
        }
        Ok(out)
    }
}

impl Kernels {
    fn compile(
        ctx: &Arc<CudaContext>,
        (major, minor): (i32, i32),
        precision: Precision,
    ) -> Result<Kernels, ModelError> {
        let code = match compile_cubin(KERNELS, (major, minor)) {
            Ok(cubin) => Ptx::from_binary(cubin),
            Err(why) => {
                debug!("no machine code from NVRTC ({why}); compiling PTX for the driver");
                compile_ptx_with_opts(
                    KERNELS,
                    CompileOptions {
                        options: vec![format!("--gpu-architecture=compute_{major}{minor}")],
                        name: Some("lookalike_kernels.cu".into()),
                        ..Default::default()
                    },
                )
                .map_err(|e| ModelError::Cuda(format!("compiling the kernels with NVRTC: {e}")))?
            }
        };
        let module = ctx
            .load_module(code)
            .map_err(cuda_error("loading the kernels"))?;
        let suffix = match precision {
            Precision::Fp32 => "f32",
            Precision::Fp16 => "f16",
        };
        let function = |name: &str| {
            module
                .load_function(name)
                .map_err(|e| ModelError::Cuda(format!("kernel {name}: {e}")))
        };
        Ok(Kernels {
            stem: function(&format!("stem_{suffix}"))?,
            depthwise: function(&format!("depthwise_{suffix}"))?,
            bias_act: function(&format!("bias_act_{suffix}"))?,
            average_pool: function(&format!("average_pool_{suffix}"))?,
            gem_pool: function(&format!("gem_pool_{suffix}"))?,
            region_pool: function(&format!("region_pool_{suffix}"))?,
            bias_f32: function("bias_act_f32")?,
        })
    }
}

/// Compiles `source` to machine code (a CUBIN) for compute capability `major.minor`. The
/// driver then loads it as it is: PTX would be compiled again by the driver, which fails when
/// NVRTC is newer than the driver (a pip-installed NVRTC 13.x with an older 13.0 driver),
/// while machine code runs on any driver of the same CUDA major version.
fn compile_cubin(source: &str, (major, minor): (i32, i32)) -> Result<Vec<u8>, String> {
    use cudarc::nvrtc::{result, sys};
    let source = std::ffi::CString::new(source).map_err(|e| e.to_string())?;
    let program = result::create_program(&source, None).map_err(|e| e.to_string())?;
    let arch = format!("--gpu-architecture=sm_{major}{minor}");
    // SAFETY: `program` was just created, and is destroyed once below, after its last use;
    // `source` outlives it.
    let cubin = unsafe {
        let built = result::compile_program(program, &[arch]).map_err(|e| e.to_string());
        let cubin = built.and_then(|()| {
            let mut size = 0usize;
            sys::nvrtcGetCUBINSize(program, &mut size)
                .result()
                .map_err(|e| e.to_string())?;
            let mut cubin = vec![0u8; size];
            sys::nvrtcGetCUBIN(program, cubin.as_mut_ptr().cast())
                .result()
                .map_err(|e| e.to_string())?;
            Ok(cubin)
        });
        // Nothing to do about a failure to free the program: it only leaks it.
        let _ = result::destroy_program(program);
        cubin
    };
    cubin.and_then(|c| match c.is_empty() {
        true => Err("an empty CUBIN".into()),
        false => Ok(c),
    })
}

/// Enough blocks of [`THREADS`] for `total` values (the kernels loop over the rest).
fn grid(total: usize) -> LaunchConfig {
    let blocks = total.div_ceil(THREADS as usize).clamp(1, 1 << 20) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// A size as the `int` kernel parameter it is: [`GpuNetwork::load`] keeps every tensor of a
/// batch under 2^31 values.
fn int(v: usize) -> i32 {
    v as i32
}

/// A value count as the kernels' `unsigned int` index type (under 2^31, as for [`int`]).
fn count(v: usize) -> u32 {
    v as u32
}

impl State {
    fn ptr<T>(&self, slice: &CudaSlice<T>) -> u64 {
        slice.device_ptr(&self.stream).0
    }

    /// One pass of `n` images (at most the allocated batch), appended to `out`. The images go
    /// up in sub-batches on their own stream: the upload of one (from pageable memory, a
    /// staged copy that keeps this thread busy) overlaps the network's work on the one before.
    fn pass(
        &mut self,
        plan: &Plan,
        pooled: &Pooled,
        batch: &[u8],
        n: usize,
        out: &mut PassOutputs,
    ) -> Result<(), ModelError> {
        self.ctx
            .bind_to_thread()
            .map_err(cuda_error("binding the CUDA context"))?;
        let net = &plan.network;
        let per_image = net.activation_len(0);
        let (dim, classes) = (net.feature_dim(), net.fc_bias.len());
        let pixels = net.feature_side() * net.feature_side();
        let copy = cuda_error("copying results from the GPU");
        let sub = n.div_ceil(4).max(16).min(n);
        let mut start = 0;
        while start < n {
            let m = sub.min(n - start);
            let images = start * per_image..(start + m) * per_image;
            {
                let mut input = self.input.slice_mut(images.clone());
                self.uploads
                    .memcpy_htod(&batch[images.clone()], &mut input)
                    .map_err(cuda_error("copying the batch to the GPU"))?;
            }
            self.stream
                .join(&self.uploads)
                .map_err(cuda_error("ordering the upload"))?;
            let offset = |slice: &CudaSlice<f32>, values: usize| {
                self.ptr(slice) + (values * std::mem::size_of::<f32>()) as u64
            };
            let input = self.ptr(&self.input) + images.start as u64;
            let features = offset(&self.features, start * dim);
            let logits = offset(&self.logits, start * classes);
            self.network(plan, m, input, features, logits)?;
            self.pool(plan, pooled, m, start)?;
            if let Some(maps) = out.feature_map.as_mut() {
                // The buffers are reused by the next sub-batch: copy the map out now.
                let Slot::Buffer(b) = plan.feature_map() else {
                    return Err(ModelError::Cuda("the plan has no feature map".into()));
                };
                let bytes = m * pixels * dim * plan.precision.bytes();
                let mut raw = vec![0u8; bytes];
                self.stream
                    .memcpy_dtoh(&self.buffers[b].slice(..bytes), &mut raw[..])
                    .map_err(&copy)?;
                self.stream.synchronize().map_err(&copy)?;
                nhwc_to_nchw(&raw, plan.precision, m, pixels, dim, maps);
            }
            start += m;
        }
        let mut host = vec![0.0f32; n * dim];
        let features = self.gem.as_ref().unwrap_or(&self.features);
        self.stream
            .memcpy_dtoh(&features.slice(..n * dim), &mut host[..])
            .map_err(&copy)?;
        if let (Some((windows, vectors)), Some(regions)) = (&self.regions, out.regions.as_mut()) {
            let len = n * (windows.len() / 3) * dim;
            let mut host = vec![0.0f32; len];
            self.stream
                .memcpy_dtoh(&vectors.slice(..len), &mut host[..])
                .map_err(&copy)?;
            regions.extend_from_slice(&host);
        }
        let mut logits = vec![0.0f32; n * classes];
        self.stream
            .memcpy_dtoh(&self.logits.slice(..n * classes), &mut logits[..])
            .map_err(&copy)?;
        self.stream.synchronize().map_err(copy)?;
        out.features.extend_from_slice(&host);
        out.logits.extend_from_slice(&logits);
        Ok(())
    }

    /// The descriptor's pooling of the `n` feature maps of a sub-batch that starts at image
    /// `start`: GeM and regions, on the network's stream.
    fn pool(&self, plan: &Plan, pooled: &Pooled, n: usize, start: usize) -> Result<(), ModelError> {
        let launch = cuda_error("running a kernel");
        let net = &plan.network;
        let (dim, side) = (net.feature_dim(), net.feature_side());
        let map = match plan.feature_map() {
            Slot::Buffer(b) => self.ptr(&self.buffers[b]),
            Slot::Input => return Err(ModelError::Cuda("the plan has no feature map".into())),
        };
        let at = |slice: &CudaSlice<f32>, values: usize| {
            self.ptr(slice) + (values * std::mem::size_of::<f32>()) as u64
        };
        let (nn, c) = (int(n), int(dim));
        if let (Global::Gem(p), Some(gem)) = (pooled.global, &self.gem) {
            let (out, pixels) = (at(gem, start * dim), int(side * side));
            let mut args = self.stream.launch_builder(&self.kernels.gem_pool);
            args.arg(&map)
                .arg(&out)
                .arg(&nn)
                .arg(&pixels)
                .arg(&c)
                .arg(&p);
            // SAFETY: as for the network's kernels, for `gem_pool`.
            unsafe { args.launch(grid(n * dim)) }.map_err(&launch)?;
        }
        if let (Some(r), Some((windows, vectors))) = (&pooled.regions, &self.regions) {
            let count = r.windows.len();
            let (out, w) = (at(vectors, start * count * dim), self.ptr(windows));
            let (count_arg, map_side) = (int(count), int(side));
            let mut args = self.stream.launch_builder(&self.kernels.region_pool);
            args.arg(&map).arg(&w).arg(&out).arg(&nn);
            args.arg(&count_arg).arg(&map_side).arg(&c).arg(&r.p);
            // SAFETY: as for the network's kernels, for `region_pool`.
            unsafe { args.launch(grid(n * count * dim)) }.map_err(&launch)?;
        }
        Ok(())
    }

    /// The network on `n` images of the 8-bit `input` (a device address), writing their
    /// average-pooled features and logits at `features` and `logits`, on the network's stream.
    fn network(
        &self,
        plan: &Plan,
        n: usize,
        input: u64,
        features: u64,
        logits: u64,
    ) -> Result<(), ModelError> {
        let launch = cuda_error("running a kernel");
        let at = |slot: Slot| match slot {
            Slot::Input => input,
            Slot::Buffer(b) => self.ptr(&self.buffers[b]),
        };
        for (step, (weight, bias)) in plan.steps.iter().zip(&self.weights) {
            let conv = &plan.network.convs[step.conv];
            let (x, y) = (at(step.input), at(step.output));
            let (w, b) = (self.ptr(weight), self.ptr(bias));
            let (k, stride, pad) = (int(conv.kernel), int(conv.stride), int(conv.pad.0));
            let (s, so) = (int(conv.in_side), int(conv.out_side));
            let total = n * conv.out_channels * conv.out_side * conv.out_side;
            match step.op {
                Op::Stem => {
                    let (ci, co) = (int(conv.in_channels), int(conv.out_channels));
                    let mut args = self.stream.launch_builder(&self.kernels.stem);
                    args.arg(&x).arg(&w).arg(&b).arg(&y);
                    let nn = int(n);
                    args.arg(&nn).arg(&ci).arg(&s).arg(&co).arg(&so);
                    args.arg(&k).arg(&stride).arg(&pad);
                    // SAFETY: the arguments match `stem`'s parameters, and every buffer holds
                    // what the plan sized it for at this batch size.
                    unsafe { args.launch(grid(total)) }.map_err(&launch)?;
                }
                Op::Depthwise => {
                    let (c, act, nn) = (int(conv.out_channels), i32::from(conv.relu6), int(n));
                    let mut args = self.stream.launch_builder(&self.kernels.depthwise);
                    args.arg(&x).arg(&w).arg(&b).arg(&y);
                    args.arg(&nn).arg(&c).arg(&s).arg(&so);
                    args.arg(&k).arg(&stride).arg(&pad).arg(&act);
                    // SAFETY: as above, for `depthwise`.
                    unsafe { args.launch(grid(total)) }.map_err(&launch)?;
                }
                Op::Pointwise => {
                    let rows = n * conv.in_side * conv.in_side;
                    self.matrix_product(plan.precision, w, x, y, rows, conv)?;
                    let r = step.residual.map_or(x, at);
                    let (c, act) = (int(conv.out_channels), i32::from(conv.relu6));
                    let (total, has_residual) = (count(total), i32::from(step.residual.is_some()));
                    let mut args = self.stream.launch_builder(&self.kernels.bias_act);
                    args.arg(&y).arg(&b).arg(&r).arg(&total);
                    args.arg(&c).arg(&act).arg(&has_residual);
                    // SAFETY: as above, for `bias_act`; `r` is only read with a residual.
                    unsafe { args.launch(grid(total as usize)) }.map_err(&launch)?;
                }
            }
        }
        let net = &plan.network;
        let (dim, classes) = (net.feature_dim(), net.fc_bias.len());
        let pixels = net.feature_side() * net.feature_side();
        let map = at(plan.feature_map());
        {
            let (nn, p, c) = (int(n), int(pixels), int(dim));
            let mut args = self.stream.launch_builder(&self.kernels.average_pool);
            args.arg(&map).arg(&features).arg(&nn).arg(&p).arg(&c);
            // SAFETY: as above, for `average_pool`.
            unsafe { args.launch(grid(n * dim)) }.map_err(&launch)?;
        }
        // logits [n, classes] = features [n, dim] x fc [classes, dim]^T, in f32.
        let (alpha, beta) = (1.0f32, 0.0f32);
        // SAFETY: the pointers are device buffers of at least n*dim, classes*dim and
        // n*classes f32 values.
        unsafe {
            blas::sgemm(
                *self.blas.handle(),
                blas_sys::cublasOperation_t::CUBLAS_OP_T,
                blas_sys::cublasOperation_t::CUBLAS_OP_N,
                int(classes),
                int(n),
                int(dim),
                &alpha,
                self.ptr(&self.fc_weight) as *const f32,
                int(dim),
                features as *const f32,
                int(dim),
                &beta,
                logits as *mut f32,
                int(classes),
            )
        }
        .map_err(blas_error("classifier"))?;
        {
            let fc_bias = self.ptr(&self.fc_bias);
            let (total, c, zero) = (count(n * classes), int(classes), 0i32);
            let mut args = self.stream.launch_builder(&self.kernels.bias_f32);
            args.arg(&logits).arg(&fc_bias).arg(&logits).arg(&total);
            args.arg(&c).arg(&zero).arg(&zero);
            // SAFETY: as above, for `bias_act_f32` without activation or residual.
            unsafe { args.launch(grid(n * classes)) }.map_err(&launch)?;
        }
        Ok(())
    }

    /// `y[rows, out] = x[rows, in] * w[out, in]^T` at the plan's precision, f32 sums. cuBLAS is
    /// column-major, so this is `y^T = w * x^T` with `w` read transposed.
    fn matrix_product(
        &self,
        precision: Precision,
        w: u64,
        x: u64,
        y: u64,
        rows: usize,
        conv: &super::super::network::Conv,
    ) -> Result<(), ModelError> {
        let (m, n, k) = (int(conv.out_channels), int(rows), int(conv.in_channels));
        let (alpha, beta) = (1.0f32, 0.0f32);
        let kind = match precision {
            Precision::Fp32 => blas_sys::cudaDataType_t::CUDA_R_32F,
            Precision::Fp16 => blas_sys::cudaDataType_t::CUDA_R_16F,
        };
        // SAFETY: w holds out*in values, x rows*in and y rows*out, all of type `kind`.
        unsafe {
            blas::gemm_ex(
                *self.blas.handle(),
                blas_sys::cublasOperation_t::CUBLAS_OP_T,
                blas_sys::cublasOperation_t::CUBLAS_OP_N,
                m,
                n,
                k,
                (&alpha as *const f32).cast(),
                w as *const std::ffi::c_void,
                kind,
                k,
                x as *const std::ffi::c_void,
                kind,
                k,
                (&beta as *const f32).cast(),
                y as *mut std::ffi::c_void,
                kind,
                m,
                blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .map_err(blas_error(&conv.name))
    }
}

/// The feature map as stored (NHWC at `precision`) to NCHW f32, appended per image.
fn nhwc_to_nchw(
    raw: &[u8],
    precision: Precision,
    n: usize,
    pixels: usize,
    dim: usize,
    out: &mut Vec<f32>,
) {
    let value = |i: usize| match precision {
        Precision::Fp32 => {
            f32::from_le_bytes([raw[4 * i], raw[4 * i + 1], raw[4 * i + 2], raw[4 * i + 3]])
        }
        Precision::Fp16 => half::f16::from_le_bytes([raw[2 * i], raw[2 * i + 1]]).to_f32(),
    };
    out.reserve(n * pixels * dim);
    for b in 0..n {
        for c in 0..dim {
            out.extend((0..pixels).map(|q| value((b * pixels + q) * dim + c)));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// NVRTC from the test data (scripts/fetch-test-data.sh), loaded by path with the builtins
    /// it loads itself: cudarc's lookup by name, and NVRTC's, then find them already loaded.
    fn load_nvrtc() {
        static LOADED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
        LOADED.get_or_init(|| {
            let dir = std::env::var_os("LOOKALIKE_TESTDATA")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/testdata")
                })
                .join("nvrtc");
            for name in ["libnvrtc-builtins.so.13.0", "libnvrtc.so.13"] {
                let path = dir.join(name);
                // SAFETY: NVRTC's initialisers only set up the compiler.
                let lib = unsafe { libloading::Library::new(&path) }.unwrap_or_else(|e| {
                    panic!("{}: {e}; run scripts/fetch-test-data.sh", path.display())
                });
                // Kept for the life of the test process.
                std::mem::forget(lib);
            }
        });
    }

    #[test]
    fn kernels_compile_for_every_gpu_generation_cuda_13_supports() {
        load_nvrtc();
        // Turing (7.5) is CUDA 13's oldest; 9.0 is H100/H200, 12.0 Blackwell workstations.
        for (major, minor) in [(7, 5), (8, 0), (8, 6), (8, 9), (9, 0), (10, 0), (12, 0)] {
            let ptx = compile_ptx_with_opts(
                KERNELS,
                CompileOptions {
                    options: vec![format!("--gpu-architecture=compute_{major}{minor}")],
                    ..Default::default()
                },
            )
            .unwrap_or_else(|e| panic!("compute_{major}{minor}: {e}"));
            let src = ptx.to_src();
            assert!(
                src.contains(&format!(".target sm_{major}{minor}")),
                "{major}.{minor}"
            );
            for kernel in [
                "stem",
                "depthwise",
                "bias_act",
                "average_pool",
                "gem_pool",
                "region_pool",
            ] {
                for suffix in ["f32", "f16"] {
                    let entry = format!(".entry {kernel}_{suffix}(");
                    assert!(src.contains(&entry), "{entry} missing for {major}.{minor}");
                }
            }
            // fp16 goes through the conversion instructions, not a float stand-in.
            assert!(src.contains("cvt.rn.f16.f32") && src.contains("cvt.f32.f16"));
        }
        // The log names the copy of NVRTC that was used: the test data's.
        let loaded = loaded_libraries();
        assert!(
            loaded.iter().any(|p| p.ends_with("nvrtc/libnvrtc.so.13")),
            "{loaded:?}"
        );
    }

    #[test]
    fn kernels_compile_to_machine_code_for_the_gpus_of_this_decade() {
        load_nvrtc();
        for device in [(7, 5), (8, 0), (8, 6), (8, 9), (9, 0), (10, 0), (12, 0)] {
            let cubin = compile_cubin(KERNELS, device)
                .unwrap_or_else(|e| panic!("sm_{}{}: {e}", device.0, device.1));
            // An ELF object that holds every entry point.
            assert_eq!(&cubin[..4], b"\x7fELF", "{device:?}");
            let text = String::from_utf8_lossy(&cubin);
            for kernel in [
                "stem_f16",
                "depthwise_f16",
                "gem_pool_f32",
                "region_pool_f16",
            ] {
                assert!(text.contains(kernel), "{kernel} missing for {device:?}");
            }
        }
        // A compute capability NVRTC does not know is an error, not a panic.
        assert!(compile_cubin(KERNELS, (1, 0)).is_err());
    }

    #[test]
    fn weights_are_stored_at_the_precision_the_kernels_read() {
        let values = [1.0f32, -2.5, 65504.0, 1.0 + 1.0 / 4096.0];
        let fp32 = stored_bytes(&values, Precision::Fp32);
        assert_eq!(fp32.len(), 16);
        assert_eq!(&fp32[4..8], &(-2.5f32).to_le_bytes());
        let fp16 = stored_bytes(&values, Precision::Fp16);
        // IEEE half bits: 1.0 = 0x3c00, -2.5 = 0xc100, 65504 = 0x7bff (the largest half);
        // 1 + 2^-12 rounds to even, 1.0.
        assert_eq!(fp16, [0x00, 0x3c, 0x00, 0xc1, 0xff, 0x7b, 0x00, 0x3c]);
    }

    #[test]
    fn feature_maps_come_back_channel_major() {
        // Two images, 2 pixels, 3 channels, NHWC: value = 100 * image + 10 * pixel + channel.
        let mut nhwc = Vec::new();
        for b in 0..2 {
            for q in 0..2 {
                for c in 0..3 {
                    nhwc.push((100 * b + 10 * q + c) as f32);
                }
            }
        }
        let raw = stored_bytes(&nhwc, Precision::Fp16);
        let mut out = Vec::new();
        nhwc_to_nchw(&raw, Precision::Fp16, 2, 2, 3, &mut out);
        assert_eq!(
            out,
            [0., 10., 1., 11., 2., 12., 100., 110., 101., 111., 102., 112.]
        );
    }
}

//! `--device` and `--precision` from the command line: the CPU stays the default, a GPU that
//! cannot be reached is a clear error (not a panic, not a silent CPU run), and `model bench`
//! reports the network's speed. On a machine with an NVIDIA driver, the GPU's vectors are
//! checked against the CPU's instead.

mod common;

use common::{lookalike, run_json};

/// With the `cuda` feature (the default build).
#[cfg(feature = "cuda")]
mod cuda {
    use super::common::{copy_photos, cosine, lookalike, run_json, stored_vectors};

    const PHOTOS: &[(&str, &str)] = &[
        ("skimage/coffee.png", "coffee.png"),
        ("skimage/chelsea.png", "chelsea.png"),
        ("sklearn/china.jpg", "china.jpg"),
        ("opencv/graf1.png", "graf1.png"),
        ("opencv/aero1.jpg", "aero1.jpg"),
    ];

    /// Whether this machine has the NVIDIA driver's library.
    fn has_cuda_driver() -> bool {
        // SAFETY: loading the driver library runs only its initialisers.
        unsafe { libloading::Library::new("libcuda.so.1") }.is_ok()
    }

    #[test]
    fn cuda_indexes_like_the_cpu_or_says_what_is_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("photos");
        copy_photos(&dir, PHOTOS);
        let (cpu_db, gpu_db) = (tmp.path().join("cpu"), tmp.path().join("gpu"));
        let gpu = lookalike(&gpu_db)
            .args(["--device", "cuda", "index", "--json"])
            .arg(&dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&gpu.stderr);
        if !has_cuda_driver() {
            assert_eq!(gpu.status.code(), Some(1), "{stderr}");
            assert!(stderr.contains("libcuda"), "{stderr}");
            assert!(stderr.contains("--device cpu"), "{stderr}");
            assert!(!stderr.contains("panicked"), "{stderr}");
            // The model loads before a new index is created: nothing is left behind.
            assert!(!gpu_db.join("catalog.sqlite").exists());
            // The environment variable asks for the same thing.
            let env = lookalike(&gpu_db)
                .env("LOOKALIKE_DEVICE", "cuda:1")
                .args(["index"])
                .arg(&dir)
                .output()
                .unwrap();
            assert_eq!(env.status.code(), Some(1));
            assert!(String::from_utf8_lossy(&env.stderr).contains("libcuda"));
            return;
        }
        assert!(gpu.status.success(), "{stderr}");
        run_json(&cpu_db, &["index", "--json", dir.to_str().unwrap()]);
        let (on_cpu, on_gpu) = (stored_vectors(&cpu_db), stored_vectors(&gpu_db));
        assert_eq!(on_gpu.len(), PHOTOS.len());
        for (key, (_, cpu)) in &on_cpu {
            let (_, gpu) = &on_gpu[key];
            let c = cosine(cpu, gpu);
            assert!(c >= 0.999, "{key:?}: cosine {c}");
        }
    }
}

/// A build without the `cuda` feature says so.
#[cfg(not(feature = "cuda"))]
#[test]
fn a_build_without_cuda_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let out = lookalike(&tmp.path().join("db"))
        .args(["--device", "cuda", "classify"])
        .arg(common::photo("skimage/coffee.png"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("without the `cuda` feature"));
}

#[test]
fn fp16_is_refused_on_the_cpu() {
    let tmp = tempfile::tempdir().unwrap();
    let out = lookalike(&tmp.path().join("db"))
        .args(["--precision", "fp16", "classify"])
        .arg(common::photo("skimage/coffee.png"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("fp16 runs on a GPU only"), "{stderr}");
    let bad = lookalike(&tmp.path().join("db"))
        .args(["--device", "tpu", "stats"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown device `tpu`"));
}

#[test]
fn model_bench_times_each_batch_size_on_the_cpu() {
    let tmp = tempfile::tempdir().unwrap();
    let report = run_json(
        &tmp.path().join("db"),
        &[
            "model",
            "bench",
            "--batch",
            "1,4",
            "--seconds",
            "0.5",
            "--json",
        ],
    );
    assert_eq!(report["device"], "cpu");
    assert!(report["gpu"].is_null(), "{report}");
    assert_eq!(report["model"], "efficientnet-lite0");
    let rows = report["network"].as_array().unwrap();
    let batches: Vec<u64> = rows.iter().map(|r| r["batch"].as_u64().unwrap()).collect();
    assert_eq!(batches, [1, 4]);
    for row in rows {
        assert_eq!(row["precision"], "fp32");
        // Lite0 runs at ~170 images/s on 2 cores: any sane rate is far from 0 and below 1e5.
        let rate = row["images_per_s"].as_f64().unwrap();
        assert!(rate > 1.0 && rate < 1e5, "{row}");
        assert!(row["batches"].as_u64().unwrap() >= 5, "{row}");
    }
    // No GPU, no agreement to report.
    assert!(report["agreement"].is_null());
}

#[test]
fn model_bench_refuses_what_it_cannot_measure() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    for (args, says) in [
        (&["--batch", "0"][..], "batch size 0"),
        (&["--batch", "16,100000"][..], "batch size 100000"),
        (&["--seconds", "0"][..], "--seconds 0"),
        (&["--seconds", "NaN"][..], "--seconds NaN"),
        (&["--images", "."][..], "use it with --device cuda"),
    ] {
        let out = lookalike(&db)
            .args(["model", "bench"])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

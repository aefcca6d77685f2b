//! Pooling and multi-scale descriptors on real photos with the real model: GeM(1) is the
//! graph's own average, max and GeM(3) make other unit vectors, two scales make a vector close
//! to but not the single-scale one, and an index created with `--pooling gem --scales 1,0.75`
//! keeps describing images that way when reopened without flags.

mod common;

use common::{copy_photos, embed, photo, run_json, run_ok, top_path};
use lookalike::descriptor::{DescriptorOptions, Pooling};
use lookalike::engine::{Engine, EngineOptions};
use lookalike::featurizer::Featurizer;
use lookalike::image::Limits;
use lookalike::model::{Compute, ModelKind, ModelStore};

fn featurizer(pooling: Pooling, scales: &[f32]) -> Featurizer {
    let options = DescriptorOptions {
        pooling,
        scales: scales.to_vec(),
        ..DescriptorOptions::baseline()
    };
    let store = ModelStore::new(common::model_dir());
    Featurizer::load(
        &store,
        ModelKind::Lite0,
        &options,
        &Compute::cpu(2),
        Limits::default(),
    )
    .expect("model")
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn assert_unit(v: &[f32]) {
    let norm = dot(v, v).sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
}

#[test]
fn pooling_the_feature_map() {
    let photos = [photo("skimage/coffee.png"), photo("sklearn/china.jpg")];
    let average = embed(&featurizer(Pooling::Average, &[1.0]), &photos);
    let gem1 = embed(&featurizer(Pooling::Gem { p: 1.0 }, &[1.0]), &photos);
    let gem3 = embed(&featurizer(Pooling::Gem { p: 3.0 }, &[1.0]), &photos);
    let max = embed(&featurizer(Pooling::Max, &[1.0]), &photos);
    for i in 0..photos.len() {
        // GeM with p = 1 over `feature_map` is the graph's own average pooling (`features`).
        let diff = max_abs_diff(&gem1[i].vector, &average[i].vector);
        assert!(diff < 1e-4, "GeM(1) vs average: {diff}");
        assert_eq!(gem1[i].logits, average[i].logits);
        for other in [&gem3[i], &max[i]] {
            assert_unit(&other.vector);
            assert!(max_abs_diff(&other.vector, &average[i].vector) > 1e-2);
            // Another view of the same activations: still similar, and the logits unchanged.
            let cosine = dot(&other.vector, &average[i].vector);
            assert!(cosine > 0.5 && cosine < 0.999, "cosine {cosine}");
            assert_eq!(other.logits, average[i].logits);
        }
    }
}

#[test]
fn two_scales_make_a_close_but_different_vector() {
    let photos = [photo("skimage/chelsea.png"), photo("opencv/aero1.jpg")];
    let single = embed(&featurizer(Pooling::Gem { p: 3.0 }, &[1.0]), &photos);
    let multi = featurizer(Pooling::Gem { p: 3.0 }, &[1.0, 0.75]);
    assert_eq!(multi.tensor_len(), 3 * (224 * 224 + 168 * 168));
    let multi = embed(&multi, &photos);
    for (s, m) in single.iter().zip(&multi) {
        assert_unit(&m.vector);
        let cosine = dot(&s.vector, &m.vector);
        assert!(cosine > 0.8 && cosine < 0.9999, "cosine {cosine}");
        // The logits are scale 1's, as without the extra scale.
        assert!(max_abs_diff(&s.logits, &m.logits) < 1e-4);
    }
    // The two photos stay told apart.
    assert!(dot(&multi[0].vector, &multi[1].vector) < 0.6);
}

#[test]
fn an_index_keeps_its_recorded_pooling_and_scales() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let names = [
        ("skimage/coffee.png", "coffee.png"),
        ("skimage/chelsea.png", "chelsea.png"),
        ("skimage/astronaut.png", "astronaut.png"),
        ("sklearn/china.jpg", "china.jpg"),
    ];
    let indexed = copy_photos(&tmp.path().join("photos"), &names);
    // Copies outside the index: searching them embeds them anew with the index's options.
    let queries = copy_photos(&tmp.path().join("queries"), &names);
    let dir = tmp.path().join("photos");
    run_ok(
        &db,
        &[
            "index",
            "--pooling",
            "gem",
            "--scales",
            "1,0.75",
            dir.to_str().unwrap(),
        ],
    );
    for (query, original) in queries.iter().zip(&indexed) {
        let expected = original.canonicalize().unwrap();
        assert_eq!(top_path(&db, query), expected.to_str().unwrap());
    }

    let engine = Engine::open(&EngineOptions::new(db.clone(), common::model_dir())).unwrap();
    assert_eq!(
        engine.featurizer().tensor_len(),
        3 * (224 * 224 + 168 * 168),
        "both scales in use"
    );
    let fresh = common::embed(engine.featurizer(), &indexed);
    for (path, fresh) in indexed.iter().zip(fresh) {
        let (_, stored) = engine.indexed_vector(path).unwrap().expect("indexed");
        let fresh = fresh.vector;
        let diff = max_abs_diff(&fresh, &stored);
        assert!(diff < 1e-5, "{}: {diff}", path.display());
    }
    drop(engine);

    // Other options for this index are refused, naming both, and change nothing.
    let before = run_json(&db, &["stats", "--json"]);
    let out = common::lookalike(&db)
        .args(["index", "--pooling", "max", dir.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(r#""kind":"gem""#) && stderr.contains(r#""kind":"max""#),
        "{stderr}"
    );
    let after = run_json(&db, &["stats", "--json"]);
    assert_eq!(
        (&after["files"], &after["items"], &after["ann_bytes"]),
        (&before["files"], &before["items"], &before["ann_bytes"])
    );
}

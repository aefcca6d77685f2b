//! The network on real photos: known ImageNet classes, and feature similarity that behaves
//! (two views of one scene close, unrelated photos far), for Lite0 and Lite2.

mod common;

use std::path::PathBuf;

use common::embed;
use lookalike::featurizer::{Embedded, Featurizer};
use lookalike::image::Limits;
use lookalike::model::{top_k, Compute, Embedder, ModelKind, ModelStore};

fn featurizer(kind: ModelKind) -> Featurizer {
    let files = ModelStore::new(common::model_dir())
        .ensure(kind)
        .expect("model");
    Featurizer::new(
        Embedder::load(&files, &Compute::cpu(2)).expect("load model"),
        Limits::default(),
    )
}

fn cosine(a: &Embedded, b: &Embedded) -> f32 {
    a.vector.iter().zip(&b.vector).map(|(x, y)| x * y).sum()
}

/// coffee -> espresso (967), chelsea -> one of the cats 281-285, camera -> tripod (872).
fn check_classes(kind: ModelKind, espresso_at_least: f32) {
    let f = featurizer(kind);
    let photos = [
        "skimage/coffee.png",
        "skimage/chelsea.png",
        "skimage/camera.png",
    ];
    let out = embed(&f, &photos.map(common::photo));
    let coffee = &top_k(&out[0].logits, 1)[0];
    assert_eq!(coffee.index, 967, "{kind:?} coffee: {coffee:?}");
    assert!(
        coffee.probability >= espresso_at_least,
        "{kind:?} coffee: {coffee:?}"
    );
    let cat = &top_k(&out[1].logits, 1)[0];
    assert!(
        (281..=285).contains(&cat.index),
        "{kind:?} chelsea: {cat:?}"
    );
    let camera = &top_k(&out[2].logits, 1)[0];
    assert_eq!(camera.index, 872, "{kind:?} camera: {camera:?}");
}

#[test]
fn lite0_knows_espresso_cats_and_tripods() {
    check_classes(ModelKind::Lite0, 0.9);
}

#[test]
fn lite2_knows_espresso_cats_and_tripods() {
    // Lite2 is less confident on coffee.png than Lite0 (0.887, with the same preprocessing
    // as the classic pipeline); its graph was checked against an independent float64 numpy
    // forward pass of the same weights (max logit difference 3e-6), so this is the weights'
    // own answer, not a conversion error.
    check_classes(ModelKind::Lite2, 0.88);
}

/// Writes `src` resized by `scale` and centre-cropped to `crop` of each side, as PNGs.
fn views_of(src: &std::path::Path, dir: &std::path::Path) -> (PathBuf, PathBuf) {
    let img = image::open(src).expect("open").to_rgb8();
    let (w, h) = img.dimensions();
    let resized =
        image::imageops::resize(&img, w / 2, h / 2, image::imageops::FilterType::Triangle);
    let resized_path = dir.join("resized.png");
    resized.save(&resized_path).expect("save");
    let (cw, ch) = (w * 7 / 10, h * 7 / 10);
    let cropped = image::imageops::crop_imm(&img, (w - cw) / 2, (h - ch) / 2, cw, ch).to_image();
    let cropped_path = dir.join("cropped.png");
    cropped.save(&cropped_path).expect("save");
    (resized_path, cropped_path)
}

fn check_similarity(kind: ModelKind) {
    let f = featurizer(kind);
    let dir = tempfile::tempdir().expect("tempdir");
    let (resized, cropped) = views_of(&common::photo("sklearn/china.jpg"), dir.path());
    let paths = vec![
        common::photo("skimage/motorcycle_left.png"),
        common::photo("skimage/motorcycle_right.png"),
        common::photo("sklearn/china.jpg"),
        resized,
        cropped,
        common::photo("skimage/coffee.png"),
        common::photo("skimage/camera.png"),
        common::photo("skimage/rocket.jpg"),
        common::photo("skimage/chelsea.png"),
    ];
    let v = embed(&f, &paths);
    let stereo = cosine(&v[0], &v[1]);
    assert!(stereo > 0.85, "{kind:?} stereo pair: {stereo}");
    let resize = cosine(&v[2], &v[3]);
    assert!(
        resize > 0.85,
        "{kind:?} china vs its half-size copy: {resize}"
    );
    let crop = cosine(&v[2], &v[4]);
    assert!(crop > 0.85, "{kind:?} china vs its 70% centre crop: {crop}");
    for (a, b) in [(5, 6), (5, 7), (6, 8), (0, 8), (2, 5)] {
        let c = cosine(&v[a], &v[b]);
        assert!(
            c < 0.4,
            "{kind:?} unrelated {} vs {}: {c}",
            paths[a].display(),
            paths[b].display()
        );
    }
}

#[test]
fn lite0_two_views_are_close_and_unrelated_photos_far() {
    check_similarity(ModelKind::Lite0);
}

#[test]
fn lite2_two_views_are_close_and_unrelated_photos_far() {
    check_similarity(ModelKind::Lite2);
}

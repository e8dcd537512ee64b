"""Joint protect vs the published order (poison, then cloak) at the same total budget, on one painting.

    python benchmarks/protect_vs_sequential.py   (expects /work/runs/report/olive-grove-400.png: the Van Gogh
    vincent-van-gogh_olive-grove-bright-blue-sky-1889.jpg downscaled to 400 px with Lanczos)

Concept pair tree -> cat, anchors ../shared/corpus/photos/cat, default ProtectConfig (LPIPS 0.07, L∞ 24/255).
"""
import os
import time

os.environ.setdefault('SFUMATO_MODELS_DIR', '../shared/models')

from sfumato import io as sio
from sfumato.anchors import load_anchor_folder
from sfumato.api import concept_report
from sfumato.protect import ProtectConfig, protect_array, sequential_array

rgb = sio.load_image(os.environ.get('SFUMATO_PVS_IMAGE', '/work/runs/report/olive-grove-400.png')).rgb
anchors = load_anchor_folder(os.path.join(os.environ.get('SFUMATO_SHARED_DIR', '../shared'), 'corpus/photos/cat'), concept='cat')
cfg = ProtectConfig(concept='tree', target='cat')
t = time.time()
j = protect_array(rgb, cfg, anchors.images, anchor_names=anchors.names)
tj = time.time() - t
t = time.time()
s = sequential_array(rgb, cfg, anchors.images)
ts = time.time() - t
def row(name, img, latent, q, secs):
    lat = {d['target']: d['relative_reduction'] for d in latent}
    rep = concept_report(rgb, img, concept='tree', target='cat')
    print(f"| {name} | {q['lpips_alex']:.4f} | {q['psnr']:.1f} | {q['linf']*255:.0f} | {lat['style']:.1%} | {lat['poison']:.1%} | {rep.get('ai_view_shows_target',{}).get('after')} | {secs:.0f} |", flush=True)
print("| way | LPIPS-alex | PSNR | L∞ /255 | style: latent reduction | poison: latent reduction | AI view cat (top-5) | s |")
print("|---|---|---|---|---|---|---|---|")
row('joint (sfumato protect)', j.image, j.latent, j.achieved, tj)
row('sequential poison → cloak', s['image'], s['latent'], s['achieved'], ts)

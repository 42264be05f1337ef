"""Weight-spectrum diagnostics and repairs of model folders (`python -m chord.diagnose`).

`maths` holds the linear algebra (spectra, principal angles, randomized SVD); `model_folder` reads
safetensors model folders; `diagnostics`, `repairs` and `report` build on them. Pure torch / numpy.
"""

"""The Space's tabs as plain functions, one module per tab; `space/app.py` lays them out and wires them.

Every handler takes the loaded `Space` (the model and what is derived from it) as its first argument; app.py binds
it once with `functools.partial`. No module here computes diffusion math: the numbers come from `ddpm_hub`.
"""

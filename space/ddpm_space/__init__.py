"""The Space's tabs, one module per tab; `space/app.py` loads the model once and composes them.

Each tab module has the tab's functions, each taking the loaded `Space` (state.py: the model and what is derived from
it) as its first argument, and a `build(space, page)` that lays out the tab, binds the Space to its handlers and wires
each one beside its control. What the tabs share: `state` (Space, bind), `loading` (the model), `inputs` (uploads and
the controls' values, checked), `pictures`, `text` (the page's prose), `widgets` (recurring components, event
settings), `chains` (where every chain starts) and `engine` (where the chain tabs' chains run). No module here computes
diffusion math: the numbers come from `ddpm_hub`.
"""

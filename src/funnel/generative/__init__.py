"""Generative recall: noise schedules, denoisers, samplers (DDPM, DDIM, VP-SDE, PF-ODE,
rectified flow, NICE), and the DiffRec / DreamRec recommenders built on them."""

"""The processes a run is made of: DDP under Hydra, parallel sweep slots, how a run stops
(lifetime) and what it leaves when it stalls (stacks), seeding, inference speed, atomic
checkpoints, and the private Lightning parts boneage relies on."""

"""What every command shares to compose, build and check a configuration: the packaged
configs and the override check (cli), instantiation (build), the checks made before training
(checks), the resolvers the YAML uses, and the errors a user can fix."""

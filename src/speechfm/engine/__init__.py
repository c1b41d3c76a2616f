"""Training engines, each in a box of its own: everything that imports an engine's internals or
patches it lives here (`fairseq/`), imports only the core and the launcher, and is used by the
stages that run it (pretrain, finetune). See docs/architecture.md."""

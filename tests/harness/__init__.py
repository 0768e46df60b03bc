"""The test bed, importable by the suite and by bench/ through these public names:

- services: Vcsim (build/vcsim, lenient or strict), GuestSim, strict_profile, free_port,
  wait_file, stop_process, USER/PASSWORD, ROOT;
- bed: running_vcsim, strict_bed, strict_guests, signed_image, next_subnet (what the e2e
  fixtures are made of);
- runner: run_vmcoreos and what the session remembers of runs (OUTPUT_LOG, LOCK_DIRS, ...);
- ova_builder (build_ova), signing (TestSigner), release_server (ReleaseServer, ReleaseTree),
  faultproxy (FaultProxy), guestsim (the guest simulator), leaks (the session-finish checks).
"""

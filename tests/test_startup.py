"""The driver's class-data archive (recsys_spark.classcache): used by local sessions when the install step
wrote it, and harmless when it cannot be used."""

from __future__ import annotations

import subprocess

from recsys_spark import classcache


def test_an_archive_the_jvm_cannot_use_is_ignored_quietly(tmp_path):
    bogus = tmp_path / "driver-0000.jsa"
    bogus.write_text("not an archive")  # e.g. written for another runtime, or cut short
    options = classcache.archive_options(bogus).split()
    assert options[0] == f"-XX:SharedArchiveFile={bogus}"
    done = subprocess.run([classcache.java_executable(), *options, "-version"], capture_output=True, text=True)
    assert done.returncode == 0 and "cds" not in done.stderr.lower() and "warning" not in done.stderr.lower()
    assert classcache.archive_options(tmp_path / "missing.jsa") == ""


def test_local_sessions_start_on_the_install_steps_archive(spark):
    archive = classcache.archive_path()
    assert archive.is_file(), "the install step (make install) writes it"
    jvm = spark.sparkContext._jvm
    arguments = list(jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments())
    assert f"-XX:SharedArchiveFile={archive}" in arguments
    diagnostic = jvm.java.lang.management.ManagementFactory.getPlatformMXBean(
        jvm.java.lang.Class.forName("com.sun.management.HotSpotDiagnosticMXBean"))
    assert diagnostic.getVMOption("UseSharedSpaces").getValue() == "true"  # class sharing is on

#!/bin/sh
# Runs the suite with its images on ext4, as users keep them: the test host's root is a tmpfs,
# which (on its 6.1 kernel) refuses O_DIRECT, so cache=none and the aio engine could not be
# tested there. The file system lives on a loop device over a sparse file in that tmpfs.
set -e
truncate -s 4G /scratch.img
mkfs.ext4 -q -E lazy_itable_init=1 /scratch.img
mkdir -p /scratch
mount -o loop /scratch.img /scratch
TMPDIR=/scratch exec sh tests/integration/suite.sh "$@"

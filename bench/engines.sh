#!/usr/bin/env bash
# I/O engine benchmark (issue 5): each of nkvm's engines (threads, aio, io_uring) on a raw and a
# qcow2 image, through the whole virtio-blk path with `nkvm img bench`; beside it, on the same
# image and workload, `qemu-img bench` with the matching engine (-i threads|native|io_uring) and
# fio on the host file with the matching system calls (psync / libaio / io_uring) as the limit.
# Everything is O_DIRECT (cache=none, fio --direct=1), so the page cache plays no part.
# Several rounds, each running every combination once; the tables give the medians.
# qemu-img bench has no random mode, so on random rows it strides instead; nkvm runs that same
# stride too (tool nkvm-stride), and the nkvm ÷ qemu-img ratio compares like with like.
#   bench/engines.sh [--quick] [--rounds N] [--seconds S] [--dir DIR] [--out FILE]
#   bench/engines.sh --from SAMPLES.tsv [--out FILE]   (tables and plot again, no measuring)
# The samples (one line per run) are kept beside the tables, as FILE-samples.tsv.
# Default: 3 rounds of 1 s per run (about 15 minutes), images in /var/tmp/nkvm-engines, tables
# to docs/engines.md and the plot to docs/engines.png. --quick: one round of 0.5 s, printed and
# written under DIR only.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=3 secs=1 dir=/var/tmp/nkvm-engines out=docs/engines.md quick=0 from=
while (($#)); do
	case $1 in
	--quick) quick=1 rounds=1 secs=0.5 ;;
	--rounds) rounds=$2 && shift ;;
	--seconds) secs=$2 && shift ;;
	--dir) dir=$2 && shift ;;
	--out) out=$2 && shift ;;
	--from) from=$2 && shift ;;
	*) echo "usage: bench/engines.sh [--quick] [--rounds N] [--seconds S] [--dir DIR]" \
		"[--out FILE] [--from SAMPLES]" >&2 && exit 2 ;;
	esac
	shift
done
((quick)) && [[ $out == docs/engines.md ]] && out=$dir/engines-quick.md
plot=${out%.md}.png
make -s nkvm
scripts/install-deps.sh
# shellcheck source=bench/lib.sh
. bench/lib.sh

engines="threads aio io_uring"
formats="raw qcow2"
queues="1 2"
# name, buffer size, fio's rw, depth per queue
workloads=(
	"4k-randread-qd1 4k randread 1"
	"4k-randread-qd32 4k randread 32"
	"4k-randread-qd128 4k randread 128"
	"4k-randwrite-qd32 4k randwrite 32"
	"1m-seqread-qd8 1M read 8"
	"1m-seqwrite-qd8 1M write 8"
)
rows=$((${#workloads[@]} * 4))
qemu_aio() { case $1 in aio) echo native ;; *) echo "$1" ;; esac; }
fio_engine() { case $1 in threads) echo psync ;; aio) echo libaio ;; *) echo io_uring ;; esac; }
# qemu-img bench has no random mode: random rows stride by 65537 blocks (wrapping inside the
# image), which spreads requests over the whole image without ever repeating a neighbour.
stride=$((65537 * 4096))
size_mb=1024
raw=$dir/disk.raw
qcow=$dir/disk.qcow2
# Limits on the threads engine's pool tried beside its default (its own table).
sweep="4 16 32"

# --- the images ------------------------------------------------------------------------------

prepare_images() {
	# The image lives on a disk: tmpfs refuses O_DIRECT and would measure memory copies.
	mkdir -p "$dir"
	if [[ $(stat -f -c %T "$dir") == tmpfs ]]; then
		echo "bench: $dir is on tmpfs; give --dir a directory on a disk" >&2
		exit 1
	fi
	# Random bytes, every block written: no sparse extent or zero cluster a read could skip.
	if [[ ! -f $raw || $(stat -c %s "$raw") -ne $((size_mb << 20)) ]]; then
		echo "bench: writing a ${size_mb} MiB raw image at $raw" >&2
		dd if=/dev/urandom of="$raw" bs=1M count=$size_mb oflag=direct status=none
		rm -f "$qcow"
	fi
	# A qcow2 left behind may have been damaged since (fio once ran on its bytes, and the next
	# run measured a corrupt image): only a clean one is reused.
	if [[ -f $qcow ]] && ! qemu-img check -q "$qcow" >>"$dir/errors.log" 2>&1; then
		echo "bench: $qcow is not clean (qemu-img check); converting it again from $raw" >&2
		rm -f "$qcow"
	fi
	# Every cluster allocated and every block of the file written, so that writes never
	# allocate and nothing reads as a hole. -S 0: convert otherwise skips zero 4 KiB chunks
	# (a write benchmark with pattern 0 leaves some in the raw image), and QEMU's qcow2 leaves
	# them as unwritten extents, which read without touching the disk.
	[[ -f $qcow ]] || qemu-img convert -S 0 -f raw -O qcow2 "$raw" "$qcow"
	sync
	if [[ -w /proc/sys/vm/drop_caches ]]; then echo 3 >/proc/sys/vm/drop_caches; fi
	# The binary measured is this one, even if the tree is rebuilt meanwhile.
	cp nkvm "$dir/nkvm"
}

# check_qcow: after the run. The write workloads wrote the qcow2 through nkvm's (and qemu-img's)
# qcow2 code; an image no longer clean is a correctness bug, so it is said on stderr and kept
# in the samples (one "# qcow2-check=" line) for the tables' header, also with --from.
check_qcow() {
	local o sum rc=0
	o=$(qemu-img check "$qcow" 2>&1) || rc=$?
	if ((rc == 0)); then
		echo "# qcow2-check=clean" >>"$data"
		return
	fi
	printf 'qemu-img check %s after the run (exit %d):\n%s\n' "$qcow" "$rc" "$o" \
		>>"$dir/errors.log"
	# Its summary ("N errors were found on the image." and/or the leaks'), else its first line.
	sum=$(grep -E 'were found on the image' <<<"$o" | paste -sd ' ' || true)
	[[ -n $sum ]] || sum=$(head -1 <<<"$o")
	echo "# qcow2-check=exit $rc: $sum" >>"$data"
	echo "bench: WARNING: $qcow is not clean after the run (qemu-img check exit $rc: $sum);" \
		"the write workloads corrupted it; see $dir/errors.log" >&2
}

# --- measuring: one line of $data per run ----------------------------------------------------

record() {
	local IFS=$'\t'
	echo "$*" >>"$data"
}
jfield() { sed -nE "s/.*\"$1\": \"?([0-9.a-z_]+).*/\1/p" <<<"$2"; }

# run_nkvm ROUND TOOL ENGINE FORMAT NAME QUEUES ARGS...: records the run, prints its op count.
run_nkvm() {
	local r=$1 tool=$2 e=$3 f=$4 name=$5 q=$6 img=$raw j ran
	shift 6
	[[ $f == qcow2 ]] && img=$qcow
	j=$("$dir/nkvm" img bench -f "$f" -i "$(qemu_aio "$e")" --queues "$q" "$@" --json \
		"$img" 2>>"$dir/errors.log") || j=
	ran=$(jfield engine "$j")
	if [[ -z $(jfield ops "$j") || $ran != "$e" ]]; then
		echo "bench: nkvm $e $f $name x$q: failed or fell back (${ran:-no result});" \
			"see $dir/errors.log" >&2
		record "$r" "$tool" "$e" "$f" "$name" "$q" - - - -
		return
	fi
	record "$r" "$tool" "$e" "$f" "$name" "$q" "$(jfield iops "$j")" \
		"$(jfield cpu_us_per_io "$j")" "$(jfield p99 "$j")" \
		"$(jfield interrupts_per_io "$j")"
	jfield ops "$j"
}

# run_qemu ROUND ENGINE FORMAT NAME QUEUES DEPTH COUNT ARGS...: qemu-img bench, COUNT requests
# with every queue's depth in its one queue; its CPU time from the shell's `time`.
run_qemu() {
	local r=$1 e=$2 f=$3 name=$4 q=$5 depth=$6 count=$7 img=$raw t s
	shift 7
	[[ $f == qcow2 ]] && img=$qcow
	if [[ -z $count ]]; then
		record "$r" qemu-img "$e" "$f" "$name" "$q" - - - -
		return
	fi
	t=$( { TIMEFORMAT='%U %S' && time qemu-img bench -f "$f" -i "$(qemu_aio "$e")" \
		-d $((depth * q)) -c "$count" "$@" "$img"; } 2>&1) || t=
	s=$(sed -nE 's/^Run completed in ([0-9.]+) seconds.*/\1/p' <<<"$t")
	if [[ -z $s ]]; then
		echo "bench: qemu-img $e $f $name x$q failed: $t" >&2
		record "$r" qemu-img "$e" "$f" "$name" "$q" - - - -
		return
	fi
	record "$r" qemu-img "$e" "$f" "$name" "$q" \
		"$(awk -v n="$count" -v s="$s" 'BEGIN { printf "%.1f", n / s }')" \
		"$(awk -v n="$count" -v c="$(tail -1 <<<"$t")" \
			'BEGIN { split(c, a, " "); printf "%.2f", (a[1] + a[2]) * 1e6 / n }')" - -
}

# run_fio ROUND ENGINE NAME QUEUES BS RW DEPTH: fio on the raw file, one job per queue (psync:
# one thread per request in flight, as a thread pool), several jobs each in its own slice.
run_fio() {
	local r=$1 e=$2 name=$3 q=$4 bs=$5 rw=$6 depth=$7 fe jobs iodepth line iops
	local ms
	fe=$(fio_engine "$e")
	jobs=$q iodepth=$depth
	[[ $fe == psync ]] && jobs=$((q * depth)) iodepth=1
	local args=(--numjobs="$jobs" --iodepth="$iodepth")
	((jobs > 1)) && args+=(--size=$((size_mb / jobs))M --offset_increment=$((size_mb / jobs))M)
	# fio's runtime takes whole seconds or a unit.
	ms=$(awk -v s="$secs" 'BEGIN { printf "%d", s * 1000 }')
	line=$(fio --name="$name" --filename="$raw" --ioengine="$fe" --direct=1 --rw="$rw" \
		--bs="$bs" --time_based --runtime="$ms"ms --thread --group_reporting \
		--output-format=terse "${args[@]}" 2>>"$dir/errors.log") || line=
	# terse v3: field 8 read IOPS, 49 write IOPS
	iops=$(awk -F';' 'NF > 49 { printf "%.1f", $8 + $49 }' <<<"$line")
	record "$r" fio "$e" raw "$name" "$q" "${iops:--}" - - -
}

# One round: every workload, queue count and engine: nkvm and qemu-img on both formats, fio.
# On random rows nkvm also runs qemu-img's stride (nkvm-stride), with the same queues, depth
# and time as its --random run: the one like-for-like comparison with qemu-img there.
run_round() {
	local r=$1 wl name bs rw depth q e f ops n_args s_args q_args w
	for wl in "${workloads[@]}"; do
		read -r name bs rw depth <<<"$wl"
		n_args=(-t none -s "$bs" -d "$depth" --time "$secs")
		q_args=(-t none -s "$bs")
		w=(-w --pattern=165)
		s_args=()
		case $rw in
		randread)
			s_args=("${n_args[@]}" -S "$stride")
			n_args+=(--random) q_args+=(-S "$stride")
			;;
		randwrite)
			s_args=("${n_args[@]}" -S "$stride" "${w[@]}")
			n_args+=(--random "${w[@]}") q_args+=(-S "$stride" "${w[@]}")
			;;
		write) n_args+=("${w[@]}") q_args+=("${w[@]}") ;;
		esac
		for q in $queues; do
			for e in $engines; do
				for f in $formats; do
					ops=$(run_nkvm "$r" nkvm "$e" "$f" "$name" "$q" "${n_args[@]}")
					if ((${#s_args[@]})); then
						run_nkvm "$r" nkvm-stride "$e" "$f" "$name" "$q" \
							"${s_args[@]}" >/dev/null
					fi
					# The same number of requests as nkvm completed.
					run_qemu "$r" "$e" "$f" "$name" "$q" "$depth" "$ops" \
						"${q_args[@]}"
				done
				run_fio "$r" "$e" "$name" "$q" "$bs" "$rw" "$depth"
			done
		done
	done
	# The threads engine with its pool limited below its default.
	for wl in "4k-randread-qd32 32" "4k-randread-qd128 128"; do
		read -r name depth <<<"$wl"
		for n in $sweep; do
			run_nkvm "$r" "nkvm-threads-$n" threads raw "$name" 1 -t none -d "$depth" \
				--random --engine-threads "$n" --time "$secs" >/dev/null
		done
	done
}

data=$dir/engines-$(date +%Y%m%d-%H%M%S).tsv
if [[ $from ]]; then
	data=$from
	rounds=$(awk -F'\t' '$1 ~ /^[0-9]+$/ && $1 > r { r = $1 } END { print r }' "$data")
	secs=$(sed -n 's/^# seconds=//p' "$data")
	quick=$(sed -n 's/^# quick=//p' "$data")
else
	prepare_images
	{
		echo "# seconds=$secs"
		echo "# quick=$quick"
		echo "# nkvm=$(git describe --always --dirty 2>/dev/null || echo unknown)"
		echo "# date=$(date +%F)"
		echo "# load-before=$(cut -d' ' -f1-3 /proc/loadavg)"
		printf 'round\ttool\tengine\tformat\tworkload\tqueues\tiops\tcpu_us\tp99_us\t'
		printf 'irq_per_io\n'
	} >"$data"
	for ((r = 1; r <= rounds; r++)); do
		echo "bench: round $r of $rounds (${secs} s per run)" >&2
		run_round "$r"
	done
	echo "# load-after=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$data"
	check_qcow
	# The samples stay beside the tables, so that the medians can be checked and redone.
	cp "$data" "${out%.md}-samples.tsv"
	data=${out%.md}-samples.tsv
fi

# --- the tables --------------------------------------------------------------------------------

# med TOOL ENGINE FORMAT WORKLOAD QUEUES COLUMN: the median over the rounds ("-" if none)
med() {
	awk -F'\t' -v t="$1" -v e="$2" -v f="$3" -v w="$4" -v q="$5" -v c="$6" \
		'$2 == t && $3 == e && $4 == f && $5 == w && $6 == q && $c != "-" { print $c }' \
		"$data" | median
}
# div A B: A / B to 2 decimals, "-" when either is missing
div() {
	awk -v a="$1" -v b="$2" \
		'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f", a / b }'
}
int() { awk -v a="$1" 'BEGIN { if (a == "-") print "-"; else printf "%.0f", a }'; }
# Samples from before nkvm-stride existed have no like-for-like run on the random rows: their
# tables compare nkvm --random with qemu-img's stride, marked "~", as they did then.
has_stride=0
if awk -F'\t' '$2 == "nkvm-stride" { found = 1; exit } END { exit !found }' "$data"; then
	has_stride=1
fi
# vs_qemu ENGINE FORMAT WORKLOAD RW QUEUES: the nkvm median to divide qemu-img's by, the run
# with qemu-img's offsets: nkvm-stride on random rows (nkvm --random, marked "~", for old
# samples), nkvm itself on sequential rows, where both already run the same sequence.
vs_qemu() {
	if [[ $4 == rand* ]] && ((has_stride)); then
		med nkvm-stride "$1" "$2" "$3" "$5" 7
	else
		med nkvm "$1" "$2" "$3" "$5" 7
	fi
}
# less A B: A < B, both numbers
less() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "-" && b != "-" && b != "" && a < b) }'; }

engine_table() {
	local e=$1 wl name rw mark f q n s sc qi fi_ head rule
	echo
	echo "## $e (qemu-img -i $(qemu_aio "$e"), fio --ioengine=$(fio_engine "$e"))"
	echo
	head="| workload | format | queues | nkvm IOPS |"
	rule="|---|---|---|---|"
	if ((has_stride)); then
		head+=" nkvm IOPS (qemu-img's offsets) |"
		rule+="---|"
	fi
	echo "$head qemu-img IOPS | nkvm ÷ qemu-img | fio IOPS | nkvm ÷ fio | nkvm CPU µs/IO |" \
		"qemu-img CPU µs/IO | nkvm p99 µs | interrupts/IO |"
	echo "$rule---|---|---|---|---|---|---|---|"
	for wl in "${workloads[@]}"; do
		read -r name _ rw _ <<<"$wl"
		mark=
		[[ $rw == rand* ]] && ((!has_stride)) && mark="~"
		for f in $formats; do
			for q in $queues; do
				n=$(med nkvm "$e" "$f" "$name" "$q" 7)
				s=$(vs_qemu "$e" "$f" "$name" "$rw" "$q")
				qi=$(med qemu-img "$e" "$f" "$name" "$q" 7)
				fi_=$(med fio "$e" raw "$name" "$q" 7)
				# Sequential rows: nkvm's own run already has qemu-img's offsets.
				sc=
				if ((has_stride)); then
					sc=" same |"
					[[ $rw == rand* ]] && sc=" $(int "$s") |"
				fi
				echo "| $name | $f | $q | $(int "$n") |$sc $mark$(int "$qi") |" \
					"$mark$(div "$s" "$qi") | $(int "$fi_") | $(div "$n" "$fi_") |" \
					"$(med nkvm "$e" "$f" "$name" "$q" 8) |" \
					"$(med qemu-img "$e" "$f" "$name" "$q" 8) |" \
					"$(int "$(med nkvm "$e" "$f" "$name" "$q" 9)") |" \
					"$(med nkvm "$e" "$f" "$name" "$q" 10) |"
			done
		done
	done
}

side_by_side() {
	local wl name f q e i c p
	echo
	echo "## The engines side by side (nkvm)"
	echo
	echo "| workload | format | queues | IOPS threads / aio / io_uring |" \
		"CPU µs/IO threads / aio / io_uring | p99 µs threads / aio / io_uring |"
	echo "|---|---|---|---|---|---|"
	for wl in "${workloads[@]}"; do
		read -r name _ <<<"$wl"
		for f in $formats; do
			for q in $queues; do
				i=() c=() p=()
				for e in $engines; do
					i+=("$(int "$(med nkvm "$e" "$f" "$name" "$q" 7)")")
					c+=("$(med nkvm "$e" "$f" "$name" "$q" 8)")
					p+=("$(int "$(med nkvm "$e" "$f" "$name" "$q" 9)")")
				done
				echo "| $name | $f | $q | ${i[0]} / ${i[1]} / ${i[2]} |" \
					"${c[0]} / ${c[1]} / ${c[2]} | ${p[0]} / ${p[1]} / ${p[2]} |"
			done
		done
	done
}

sweep_table() {
	local name n line head="| workload | default |" rule="|---|---|"
	echo
	echo "## The threads engine's pool limited (raw, 1 queue; --engine-threads N)"
	echo
	for n in $sweep; do
		head+=" at most $n workers |"
		rule+="---|"
	done
	echo "$head"
	echo "$rule"
	for name in 4k-randread-qd32 4k-randread-qd128; do
		line="| $name | $(int "$(med nkvm threads raw "$name" 1 7)") IOPS,"
		line+=" $(med nkvm threads raw "$name" 1 8) µs CPU |"
		for n in $sweep; do
			line+=" $(int "$(med "nkvm-threads-$n" threads raw "$name" 1 7)") IOPS,"
			line+=" $(med "nkvm-threads-$n" threads raw "$name" 1 8) µs CPU |"
		done
		echo "$line"
	done
}

targets() {
	local best e n wl name f q ratio below worse t b
	echo
	echo "## The issue's targets, from the medians above"
	echo
	best=$(for e in $engines; do med fio "$e" raw 4k-randread-qd32 1 7; done | sort -g |
		tail -1)
	for e in $engines; do
		n=$(med nkvm "$e" raw 4k-randread-qd32 1 7)
		echo "- 4k random read QD32, raw, 1 queue, nkvm $e ÷ host fio:" \
			"$(div "$n" "$(med fio "$e" raw 4k-randread-qd32 1 7)") against fio" \
			"$(fio_engine "$e"), $(div "$n" "$best") against the best fio engine" \
			"(target ≥ 0.90)"
	done
	# Like for like: on random rows nkvm with qemu-img's stride (vs_qemu).
	local how="random rows: nkvm with qemu-img's stride"
	((has_stride)) || how="random rows: nkvm --random against qemu-img's stride, not like for like"
	for e in $engines; do
		below=()
		for wl in "${workloads[@]}"; do
			read -r name _ rw _ <<<"$wl"
			for f in $formats; do
				for q in $queues; do
					ratio=$(div "$(vs_qemu "$e" "$f" "$name" "$rw" "$q")" \
						"$(med qemu-img "$e" "$f" "$name" "$q" 7)")
					if less "$ratio" 1; then
						below+=("$name $f x$q ($ratio)")
					fi
				done
			done
		done
		echo "- nkvm $e ≥ qemu-img -i $(qemu_aio "$e") on every row ($how):" \
			"${#below[@]} of $rows rows below${below:+: $(printf "%s; " "${below[@]}")}"
	done
	# The default engine of a cache=none disk, which is what every row here is (disk.c).
	local default=io_uring
	worse=()
	for wl in "${workloads[@]}"; do
		read -r name _ <<<"$wl"
		for f in $formats; do
			for q in $queues; do
				t=$(med nkvm "$default" "$f" "$name" "$q" 8)
				b=$(for e in $engines; do
					[[ $e == "$default" ]] || med nkvm "$e" "$f" "$name" "$q" 8
				done |
					grep -v -- - | sort -g | head -1)
				[[ -n $b ]] || continue
				if less "$(awk -v b="$b" 'BEGIN { print 1.1 * b }')" "$t"; then
					worse+=("$name $f x$q ($t vs $b)")
				fi
			done
		done
	done
	echo "- CPU per I/O of the default ($default) within 10% of the best alternative:" \
		"${#worse[@]} of $rows rows worse${worse:+: $(printf "%s; " "${worse[@]}")}"
}

header() {
	local machine check
	machine="$(nproc) CPUs ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)),"
	machine+=" $(free -g | awk '/^Mem:/ { print $2 }') GiB RAM, kernel $(uname -r), image on"
	machine+=" $(findmnt -no FSTYPE -T "$dir") ($(df --output=source "$dir" | tail -1))"
	echo "# I/O engines: nkvm img bench, qemu-img bench, fio"
	echo
	# Said first: numbers measured on an image that ended up corrupt are suspect.
	check=$(sed -n 's/^# qcow2-check=//p' "$data")
	if [[ -n $check && $check != clean ]]; then
		echo "**Warning: the qcow2 image was not clean after this run** (\`qemu-img check\`"
		echo "$check): the write workloads corrupted it."
		echo
	fi
	echo "Command: \`bench/engines.sh$( ((quick)) && echo " --quick")\`" \
		"($(sed -n 's/^# date=//p' "$data"), nkvm" \
		"$(sed -n 's/^# nkvm=//p' "$data")), $rounds round(s) of ${secs} s per run; medians." \
		"Machine: $machine; load average $(sed -n 's/^# load-before=//p' "$data") before," \
		"$(sed -n 's/^# load-after=//p' "$data") after."
	echo
	echo "Images: ${size_mb} MiB of random data, raw, and qcow2 converted from it (every"
	echo "cluster allocated). Everything O_DIRECT (nkvm and qemu-img \`-t none\`, fio"
	echo "\`--direct=1\`): the page cache plays no part. nkvm: \`nkvm img bench -t none -i ENGINE"
	echo "--queues Q --time S\` (a driver thread per queue plays the guest; latency and"
	echo "interrupts counted at the driver; CPU is the whole process's, driver included)."
	echo "$(qemu-img --version | head -1 | sed 's/ (.*//'): the same number of requests as nkvm"
	echo "completed, \`-d\` = queues x depth (it has one queue); its CPU per I/O includes its"
	echo "start-up. $(fio --version) on the raw file, one job per queue (psync: one job per"
	echo "request in flight, as a thread pool): the host's limit, repeated in the qcow2 rows."
	echo "qemu-img bench has no random mode; on random rows it strides by 65537 blocks"
	if ((has_stride)); then
		echo "(\`-S $stride\`) instead. So on those rows the comparison with qemu-img"
		echo "(nkvm ÷ qemu-img, and the targets) uses nkvm run with qemu-img's stride (same"
		echo "queues, depth and time as its \`--random\` run; column \"qemu-img's offsets\"),"
		echo "while nkvm IOPS, the comparison with fio and the engines side by side use nkvm"
		echo "\`--random\`. Raw samples: \`$data\`."
	else
		echo "(\`-S $stride\`) instead. ~: these samples have no nkvm run with that stride, so"
		echo "on random rows nkvm \`--random\` is compared with qemu-img's stride: not the same"
		echo "workload. Raw samples: \`$data\`."
	fi
}

{
	header
	for e in $engines; do engine_table "$e"; done
	side_by_side
	sweep_table
	targets
} >"$out"
cat "$out"

# --- the plot: raw image, one queue; IOPS of each tool and engine, nkvm's CPU per I/O -------

pdata=$dir/engines-plot.dat
{
	echo "# workload nkvm-threads nkvm-aio nkvm-io_uring qemu-threads qemu-native" \
		"qemu-io_uring fio-psync fio-libaio fio-io_uring cpu-threads cpu-aio cpu-io_uring"
	for wl in "${workloads[@]}"; do
		read -r name _ <<<"$wl"
		row=$name
		for t in nkvm qemu-img fio; do
			for e in $engines; do
				row+=" $(med "$t" "$e" raw "$name" 1 7 | sed 's/^-$/NaN/')"
			done
		done
		for e in $engines; do
			row+=" $(med nkvm "$e" raw "$name" 1 8 | sed 's/^-$/NaN/')"
		done
		echo "$row"
	done
} >"$pdata"
gnuplot <<EOF
set terminal pngcairo size 1200,900 font ",10" noenhanced
set output "$plot"
set lmargin 12
set rmargin 28
set multiplot layout 2,1 title \
	"I/O engines, raw image, 1 queue, O_DIRECT (medians of $rounds rounds)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key outside right top
set xtics rotate by -20
set grid ytics
set logscale y
set ylabel "IOPS"
plot "$pdata" using 2:xtic(1) title "nkvm threads" lc rgb "#1f77b4", \
	'' using 3 title "nkvm aio" lc rgb "#ff7f0e", \
	'' using 4 title "nkvm io_uring" lc rgb "#2ca02c", \
	'' using 5 title "qemu-img threads" lc rgb "#9ecae1", \
	'' using 6 title "qemu-img native" lc rgb "#fdd0a2", \
	'' using 7 title "qemu-img io_uring" lc rgb "#a1d99b", \
	'' using 10 title "fio io_uring (limit)" lc rgb "#444444"
unset logscale y
set ylabel "nkvm CPU µs per I/O"
plot "$pdata" using 11:xtic(1) title "threads" lc rgb "#1f77b4", \
	'' using 12 title "aio" lc rgb "#ff7f0e", '' using 13 title "io_uring" lc rgb "#2ca02c"
unset multiplot
EOF
echo "bench: tables in $out, plot in $plot, samples in $data" >&2

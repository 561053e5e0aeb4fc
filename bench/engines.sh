#!/usr/bin/env bash
# I/O engine benchmark (issue 5): each of nkvm's engines (threads, aio, io_uring) on a raw and a
# qcow2 image, through the whole virtio-blk path with `nkvm img bench`; beside it, on the same
# image and workload, `qemu-img bench` with the matching engine (-i threads|native|io_uring) and
# fio on the host file with the matching system calls (psync / libaio / io_uring) as the limit.
# Everything is O_DIRECT (cache=none, fio --direct=1), so the page cache plays no part.
# Several rounds, each running every combination once; the tables give the medians.
#   bench/engines.sh [--quick] [--rounds N] [--seconds S] [--dir DIR] [--out FILE]
#   bench/engines.sh --from SAMPLES.tsv [--out FILE]   (tables and plot again, no measuring)
# Default: 3 rounds of 1 s per run (about 12 minutes), images in /var/tmp/nkvm-engines, tables
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

# The image lives on a disk: tmpfs refuses O_DIRECT and would measure memory copies.
mkdir -p "$dir"
if [[ $(stat -f -c %T "$dir") == tmpfs ]]; then
	echo "bench: $dir is on tmpfs; give --dir a directory on a disk" >&2
	exit 1
fi
raw=$dir/disk.raw
qcow=$dir/disk.qcow2
size_mb=1024
# Random bytes, every block written: no sparse extents or zero clusters that a read could skip.
if [[ -z $from ]] && [[ ! -f $raw || $(stat -c %s "$raw") -ne $((size_mb << 20)) ]]; then
	echo "bench: writing a ${size_mb} MiB raw image at $raw" >&2
	dd if=/dev/urandom of="$raw" bs=1M count=$size_mb oflag=direct status=none
	rm -f "$qcow"
fi
# Every cluster allocated (random data has no zero clusters), so writes never allocate.
if [[ -z $from ]]; then
	[[ -f $qcow ]] || qemu-img convert -f raw -O qcow2 "$raw" "$qcow"
	sync
	if [[ -w /proc/sys/vm/drop_caches ]]; then echo 3 >/proc/sys/vm/drop_caches; fi
fi

engines="threads aio io_uring"
# name, buffer size, fio's rw, depth per queue
workloads=(
	"4k-randread-qd1 4k randread 1"
	"4k-randread-qd32 4k randread 32"
	"4k-randread-qd128 4k randread 128"
	"4k-randwrite-qd32 4k randwrite 32"
	"1m-seqread-qd8 1M read 8"
	"1m-seqwrite-qd8 1M write 8"
)
formats="raw qcow2"
queues="1 2"
qemu_aio() { case $1 in aio) echo native ;; *) echo "$1" ;; esac; }
fio_engine() { case $1 in threads) echo psync ;; aio) echo libaio ;; *) echo io_uring ;; esac; }
# qemu-img bench has no random mode: random rows stride by 65537 blocks (wrapping inside the
# image), which spreads requests over the whole image without ever repeating a neighbour.
stride=$((65537 * 4096))
# fio takes whole seconds or a unit.
runtime_ms=$(awk -v s="$secs" 'BEGIN { printf "%d", s * 1000 }')

data=$dir/engines-$(date +%Y%m%d-%H%M%S).tsv
if [[ $from ]]; then
	data=$from
	rounds=$(awk -F'\t' '$1 ~ /^[0-9]+$/ && $1 > r { r = $1 } END { print r }' "$data")
	secs=$(sed -n 's/^# seconds=//p' "$data")
	quick=$(sed -n 's/^# quick=//p' "$data")
else
	{
		echo "# seconds=$secs"
		echo "# quick=$quick"
		printf 'round\ttool\tengine\tformat\tworkload\tqueues\tiops\tcpu_us\tp99_us\t'
		printf 'irq_per_io\n'
	} >"$data"
fi
record() {
	local IFS=$'\t'
	echo "$*" >>"$data"
}
jfield() { sed -nE "s/.*\"$1\": \"?([0-9.a-z_]+).*/\1/p" <<<"$2"; }

for ((r = 1; r <= rounds; r++)); do
	[[ $from ]] && break
	echo "bench: round $r of $rounds (${secs} s per run)" >&2
	for wl in "${workloads[@]}"; do
		read -r name bs rw depth <<<"$wl"
		nargs=(-t none -s "$bs" -d "$depth" --time "$secs" --json)
		qargs=(-t none -s "$bs")
		case $rw in
		randread) nargs+=(--random) && qargs+=(-S "$stride") ;;
		randwrite) nargs+=(--random -w --pattern=165) && qargs+=(-S "$stride" -w --pattern=165) ;;
		write) nargs+=(-w --pattern=165) && qargs+=(-w --pattern=165) ;;
		esac
		for q in $queues; do
			for e in $engines; do
				for f in $formats; do
					img=$raw
					[[ $f == qcow2 ]] && img=$qcow
					j=$(./nkvm img bench -f "$f" -i "$(qemu_aio "$e")" --queues "$q" \
						"${nargs[@]}" "$img" 2>>"$dir/errors.log") || j=
					ops=$(jfield ops "$j")
					ran=$(jfield engine "$j")
					if [[ -z $ops || $ran != "$e" ]]; then
						echo "bench: nkvm $e $f $name x$q: failed or fell back" \
							"(${ran:-no result}); see $dir/errors.log" >&2
						record "$r" nkvm "$e" "$f" "$name" "$q" - - - -
						continue
					fi
					record "$r" nkvm "$e" "$f" "$name" "$q" "$(jfield iops "$j")" \
						"$(jfield cpu_us_per_io "$j")" "$(jfield p99 "$j")" \
						"$(jfield interrupts_per_io "$j")"
					# The same number of requests, all queues' depth in one queue.
					t=$( { TIMEFORMAT='%U %S' && time qemu-img bench -f "$f" \
						-i "$(qemu_aio "$e")" -d $((depth * q)) -c "$ops" \
						"${qargs[@]}" "$img"; } 2>&1) || t=
					s=$(sed -nE 's/^Run completed in ([0-9.]+) seconds.*/\1/p' <<<"$t")
					cpu=$(tail -1 <<<"$t")
					if [[ -z $s ]]; then
						echo "bench: qemu-img $e $f $name x$q failed: $t" >&2
						record "$r" qemu-img "$e" "$f" "$name" "$q" - - - -
						continue
					fi
					record "$r" qemu-img "$e" "$f" "$name" "$q" \
						"$(awk -v n="$ops" -v s="$s" 'BEGIN { printf "%.1f", n / s }')" \
						"$(awk -v n="$ops" -v c="$cpu" 'BEGIN { split(c, a, " ");
							printf "%.2f", (a[1] + a[2]) * 1e6 / n }')" - -
				done
				# fio on the raw file: one job per queue (psync: one thread per request
				# in flight, as a thread pool), each sequential job in its own slice.
				fe=$(fio_engine "$e")
				jobs=$q iodepth=$depth
				[[ $fe == psync ]] && jobs=$((q * depth)) iodepth=1
				fargs=(--numjobs="$jobs" --iodepth="$iodepth")
				((jobs > 1)) && fargs+=(--size=$((size_mb / jobs))M
					--offset_increment=$((size_mb / jobs))M)
				line=$(fio --name="$name" --filename="$raw" --ioengine="$fe" --direct=1 \
					--rw="$rw" --bs="$bs" --time_based --runtime="$runtime_ms"ms \
					--thread --group_reporting --output-format=terse "${fargs[@]}" \
					2>>"$dir/errors.log") || line=
				iops=$(awk -F';' 'NF > 49 { printf "%.1f", $8 + $49 }' <<<"$line")
				record "$r" fio "$e" raw "$name" "$q" "${iops:--}" - - -
			done
		done
	done
done

# med TOOL ENGINE FORMAT WORKLOAD QUEUES COLUMN: the median over the rounds ("-" if none)
med() {
	awk -F'\t' -v t="$1" -v e="$2" -v f="$3" -v w="$4" -v q="$5" -v c="$6" \
		'$2 == t && $3 == e && $4 == f && $5 == w && $6 == q && $c != "-" { print $c }' \
		"$data" | median
}
# div A B: A / B to 2 decimals, "-" when either is missing
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-";
	else printf "%.2f", a / b }'; }
int() { awk -v a="$1" 'BEGIN { if (a == "-") print "-"; else printf "%.0f", a }'; }

machine="$(nproc) CPUs ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), $(free -g |
	awk '/^Mem:/ { print $2 }') GiB RAM, kernel $(uname -r), image file system $(stat -f -c %T \
	"$dir") on $(df --output=source "$dir" | tail -1)"
{
	echo "# I/O engines: nkvm img bench, qemu-img bench, fio"
	echo
	echo "Command: \`bench/engines.sh$( ((quick)) && echo " --quick")\` ($(date +%F)), $rounds" \
		"round(s) of ${secs} s per run; medians. Machine: $machine."
	echo "Images: ${size_mb} MiB of random data, raw, and qcow2 converted from it (every cluster"
	echo "allocated). Everything O_DIRECT (nkvm and qemu-img \`-t none\`, fio \`--direct=1\`): the"
	echo "page cache plays no part. nkvm: \`nkvm img bench -t none -i ENGINE --queues Q --time S\`"
	echo "(a driver thread per queue plays the guest; per-request latency and interrupts"
	echo "counted at the driver; CPU is the whole process's, driver included). qemu-img"
	echo "$(qemu-img --version | head -1 | sed 's/ (.*//'): the same number of requests as nkvm"
	echo "completed, \`-d\` = queues x depth (it has one queue); its CPU per I/O includes its"
	echo "start-up. fio $(fio --version): on the raw file, one job per queue (psync: one job per"
	echo "request in flight, as a thread pool), the limit of the host; the same numbers stand in"
	echo "the qcow2 rows. ~: qemu-img bench has no random mode; on random rows it strides by"
	echo "65537 blocks (\`-S $stride\`) instead. Raw samples: \`$data\`."
	for e in $engines; do
		echo
		echo "## $e (qemu-img -i $(qemu_aio "$e"), fio --ioengine=$(fio_engine "$e"))"
		echo
		echo "| workload | format | queues | nkvm IOPS | qemu-img IOPS | nkvm ÷ qemu-img |" \
			"fio IOPS | nkvm ÷ fio | nkvm CPU µs/IO | qemu-img CPU µs/IO | nkvm p99 µs |" \
			"interrupts/IO |"
		echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
		for wl in "${workloads[@]}"; do
			read -r name _ rw _ <<<"$wl"
			mark=
			[[ $rw == rand* ]] && mark="~"
			for f in $formats; do
				for q in $queues; do
					n=$(med nkvm "$e" "$f" "$name" "$q" 7)
					qi=$(med qemu-img "$e" "$f" "$name" "$q" 7)
					fi_=$(med fio "$e" raw "$name" "$q" 7)
					echo "| $name | $f | $q | $(int "$n") | $mark$(int "$qi") |" \
						"$mark$(div "$n" "$qi") | $(int "$fi_") | $(div "$n" "$fi_") |" \
						"$(med nkvm "$e" "$f" "$name" "$q" 8) |" \
						"$(med qemu-img "$e" "$f" "$name" "$q" 8) |" \
						"$(int "$(med nkvm "$e" "$f" "$name" "$q" 9)") |" \
						"$(med nkvm "$e" "$f" "$name" "$q" 10) |"
				done
			done
		done
	done
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
	echo
	echo "## The issue's targets, from the medians above"
	echo
	best=$(for e in $engines; do med fio "$e" raw 4k-randread-qd32 1 7; done | sort -g | tail -1)
	for e in $engines; do
		n=$(med nkvm "$e" raw 4k-randread-qd32 1 7)
		echo "- 4k random read QD32, raw, 1 queue, nkvm $e ÷ host fio: $(div "$n" \
			"$(med fio "$e" raw 4k-randread-qd32 1 7)") against fio $(fio_engine "$e")," \
			"$(div "$n" "$best") against the best fio engine (target ≥ 0.90)"
	done
	for e in $engines; do
		below=()
		for wl in "${workloads[@]}"; do
			read -r name _ <<<"$wl"
			for f in $formats; do
				for q in $queues; do
					ratio=$(div "$(med nkvm "$e" "$f" "$name" "$q" 7)" \
						"$(med qemu-img "$e" "$f" "$name" "$q" 7)")
					awk -v r="$ratio" 'BEGIN { exit !(r != "-" && r < 1) }' &&
						below+=("$name $f x$q ($ratio)")
				done
			done
		done
		echo "- nkvm $e ≥ qemu-img -i $(qemu_aio "$e") on every row: ${#below[@]} of" \
			"$((${#workloads[@]} * 4)) rows below${below:+: $(printf "%s; " "${below[@]}")}"
	done
	worse=()
	for wl in "${workloads[@]}"; do
		read -r name _ <<<"$wl"
		for f in $formats; do
			for q in $queues; do
				t=$(med nkvm threads "$f" "$name" "$q" 8)
				b=$(for e in aio io_uring; do med nkvm "$e" "$f" "$name" "$q" 8; done |
					grep -v -- - | sort -g | head -1)
				awk -v t="$t" -v b="$b" 'BEGIN { exit !(t != "-" && b != "" && t > 1.1 * b) }' &&
					worse+=("$name $f x$q ($t vs $b)")
			done
		done
	done
	echo "- CPU per I/O of the default (threads) within 10% of the best alternative: ${#worse[@]}" \
		"of $((${#workloads[@]} * 4)) rows worse${worse:+: $(printf "%s; " "${worse[@]}")}"
} >"$out"
cat "$out"

# The plot: raw image, one queue; IOPS of each tool and engine, and nkvm's CPU per I/O.
pdata=$dir/engines-plot.dat
{
	echo "# workload nkvm-threads nkvm-aio nkvm-io_uring qemu-threads qemu-native qemu-io_uring" \
		"fio-psync fio-libaio fio-io_uring cpu-threads cpu-aio cpu-io_uring"
	for wl in "${workloads[@]}"; do
		read -r name _ <<<"$wl"
		row=$name
		for t in nkvm qemu-img fio; do
			for e in $engines; do
				f=raw
				row+=" $(med "$t" "$e" "$f" "$name" 1 7 | sed 's/^-$/NaN/')"
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
set lmargin 12
set rmargin 28
set output "$plot"
set multiplot layout 2,1 title "I/O engines, raw image, 1 queue, O_DIRECT (medians of $rounds rounds)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key outside right top
set xtics rotate by -20
set grid ytics
set logscale y
set ylabel "IOPS"
plot "$pdata" using 2:xtic(1) title "nkvm threads" lc rgb "#1f77b4", \
	'' using 3 title "nkvm aio" lc rgb "#ff7f0e", '' using 4 title "nkvm io_uring" lc rgb "#2ca02c", \
	'' using 5 title "qemu-img threads" lc rgb "#9ecae1", '' using 6 title "qemu-img native" lc rgb "#fdd0a2", \
	'' using 7 title "qemu-img io_uring" lc rgb "#a1d99b", \
	'' using 10 title "fio io_uring (limit)" lc rgb "#444444"
unset logscale y
set ylabel "nkvm CPU µs per I/O"
plot "$pdata" using 11:xtic(1) title "threads" lc rgb "#1f77b4", \
	'' using 12 title "aio" lc rgb "#ff7f0e", '' using 13 title "io_uring" lc rgb "#2ca02c"
unset multiplot
EOF
echo "bench: tables in $out, plot in $plot, samples in $data" >&2

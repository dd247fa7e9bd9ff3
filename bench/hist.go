package bench

import (
	"fmt"
	"math"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Histograms count microseconds from 1 µs to 60 s with three significant
// digits (0.1% resolution), ~130 KiB each.
const (
	histMin  = 1
	histMax  = 60_000_000
	histSigs = 3
)

func newHist() *hdr.Histogram { return hdr.New(histMin, histMax, histSigs) }

// recordDur records d, clamped into the histogram's range so an outlier is
// counted at the edge rather than dropped.
func recordDur(h *hdr.Histogram, d time.Duration) {
	us := d.Microseconds()
	_ = h.RecordValue(min(max(us, histMin), histMax))
}

// encodeHist serialises h for the trip from a worker to the parent.
func encodeHist(h *hdr.Histogram) (string, error) {
	b, err := h.Encode(hdr.V2CompressedEncodingCookieBase)
	if err != nil {
		return "", fmt.Errorf("bench: encode histogram: %w", err)
	}
	return string(b), nil
}

// mergeEncoded decodes s and adds it into dst. An empty s adds nothing.
func mergeEncoded(dst *hdr.Histogram, s string) error {
	if s == "" {
		return nil
	}
	h, err := hdr.Decode([]byte(s))
	if err != nil {
		return fmt.Errorf("%w: histogram: %v", ErrMalformed, err)
	}
	if dropped := dst.Merge(h); dropped != 0 {
		return fmt.Errorf("%w: histogram merge dropped %d values", ErrMalformed, dropped)
	}
	return nil
}

// Percentiles summarises a latency histogram in milliseconds.
type Percentiles struct {
	Count int64   `json:"count"`
	Min   float64 `json:"min_ms"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

func summarize(h *hdr.Histogram) Percentiles {
	if h == nil || h.TotalCount() == 0 {
		return Percentiles{}
	}
	ms := func(us int64) float64 { return float64(us) / 1e3 }
	return Percentiles{
		Count: h.TotalCount(),
		Min:   ms(h.Min()),
		Mean:  h.Mean() / 1e3,
		P50:   ms(h.ValueAtQuantile(50)),
		P90:   ms(h.ValueAtQuantile(90)),
		P99:   ms(h.ValueAtQuantile(99)),
		P999:  ms(h.ValueAtQuantile(99.9)),
		Max:   ms(h.Max()),
	}
}

// CDFPoint is one point of a latency distribution: the fraction Q of
// deliveries that took at most Ms milliseconds.
type CDFPoint struct {
	Q  float64 `json:"q"`
	Ms float64 `json:"ms"`
}

// cdf samples h at quantiles spaced evenly on the 1/(1-q) axis of an HDR
// plot (0, 90%, 99%, 99.9%, … get equal room), ending at the maximum.
func cdf(h *hdr.Histogram, perDecade int) []CDFPoint {
	n := h.TotalCount()
	if n == 0 {
		return nil
	}
	// Past 1/(1-q) = n every quantile is the maximum.
	decades := max(1, math.Ceil(math.Log10(float64(n))))
	var pts []CDFPoint
	last := -1.0
	for i := 0; i <= int(decades)*perDecade; i++ {
		q := 1 - math.Pow(10, -float64(i)/float64(perDecade))
		v := float64(h.ValueAtQuantile(q*100)) / 1e3
		if v == last && i%perDecade != 0 {
			continue
		}
		pts = append(pts, CDFPoint{Q: q, Ms: v})
		last = v
	}
	return append(pts, CDFPoint{Q: 1, Ms: float64(h.Max()) / 1e3})
}

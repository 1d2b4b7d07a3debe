// Command plot draws the benchmark summary (bench/RESULTS.png) from the
// JSON file meshca-bench writes: four panels of medians with min-max
// whiskers, each showing one comparison measured in the same run.
//
//	go run . -in ../out/results.json -out ../RESULTS.png
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"image/color"
	"log"
	"os"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

type figure struct {
	Name       string    `json:"name"`
	Unit       string    `json:"unit"`
	Values     []float64 `json:"values"`
	Median     float64   `json:"median"`
	Min        float64   `json:"min"`
	Max        float64   `json:"max"`
	LowerBound bool      `json:"lowerBound"`
}

type results struct {
	Date    string            `json:"date"`
	Machine map[string]string `json:"machine"`
	Figures []figure          `json:"figures"`
}

// bar is one bar of a panel: a figure's median and spread.
type bar struct {
	label string
	f     *figure
}

func main() {
	in := flag.String("in", "bench/out/results.json", "meshca-bench JSON output")
	out := flag.String("out", "bench/RESULTS.png", "PNG to write")
	flag.Parse()
	b, err := os.ReadFile(*in)
	if err != nil {
		log.Fatal(err)
	}
	var r results
	if err := json.Unmarshal(b, &r); err != nil {
		log.Fatal(err)
	}
	get := func(name string) *figure {
		for i := range r.Figures {
			if r.Figures[i].Name == name {
				return &r.Figures[i]
			}
		}
		return nil
	}
	var issuance []bar
	for _, alg := range []string{"ecdsa-p256", "ecdsa-p384", "ed25519", "rsa-2048", "rsa-3072", "rsa-4096"} {
		issuance = append(issuance, bar{alg, get("issue/floor speed " + alg)})
	}
	panels := []*plot.Plot{
		panel("Issuance speed / crypto floor (goal >= 0.8)", "x of floor", issuance, 0.8),
		panel("Time to ready vs API write floor", "seconds", []bar{
			{"floor N=100", get("API write floor N=100 (serial creates)")}, {"meshca N=100", get("ready N=100 total")},
			{"floor N=1000", get("API write floor N=1000 (serial creates)")}, {"meshca N=1000", get("ready N=1000 total")},
		}, 0),
		panel("All-ready N=1000: meshca vs cert-manager", "seconds", []bar{
			{"meshca default", get("meshca all-ready N=1000, defaults")}, {"c-m default", get("cert-manager all-ready N=1000, defaults")},
			{"meshca lifted", get("meshca all-ready N=1000, lifted")}, {"c-m lifted", get("cert-manager all-ready N=1000, lifted")},
		}, 0),
		panel("Peak RSS (goal: meshca < 64 MiB at 1,000)", "MiB", []bar{
			{"1k managed", get("peak RSS, 1000 managed")}, {"+20k unrelated", get("peak RSS, 1000 managed + 20000 unrelated")},
			{"c-m 1k lifted", get("cert-manager peak RSS N=1000, lifted")}, {"meshca 1k lifted", get("meshca peak RSS N=1000, lifted")},
		}, 64),
	}
	const w, h = 13 * vg.Inch, 9 * vg.Inch
	img := vgimg.New(w, h)
	dc := draw.New(img)
	panels[0].Title.Text = fmt.Sprintf("%s, %s cores, %s\n%s", r.Date[:10], r.Machine["cores"], r.Machine["memory"], panels[0].Title.Text)
	tiles := draw.Tiles{Rows: 2, Cols: 2, PadX: vg.Inch / 3, PadY: vg.Inch / 3, PadTop: vg.Inch / 6, PadLeft: vg.Inch / 6, PadRight: vg.Inch / 6, PadBottom: vg.Inch / 6}
	canvases := plot.Align([][]*plot.Plot{{panels[0], panels[1]}, {panels[2], panels[3]}}, tiles, dc)
	for i := range 2 {
		for j := range 2 {
			panels[i*2+j].Draw(canvases[i][j])
		}
	}
	f, err := os.Create(*out)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		log.Fatal(err)
	}
}

var palette = []color.Color{
	color.RGBA{R: 0x9e, G: 0x9e, B: 0x9e, A: 0xff}, // floor / peer: grey
	color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, // meshca: blue
}

// panel draws one bar per figure with min-max whiskers and, when goal is
// non-zero, a dashed goal line. Missing figures are left out.
func panel(title, unit string, bars []bar, goal float64) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = unit
	p.Y.Min = 0
	var names []string
	var i int
	for _, b := range bars {
		if b.f == nil || len(b.f.Values) == 0 {
			continue
		}
		v := plotter.Values{b.f.Median}
		ch, err := plotter.NewBarChart(v, vg.Points(34))
		if err != nil {
			log.Fatal(err)
		}
		ch.XMin = float64(i)
		c := palette[1]
		if strings.Contains(b.label, "floor") || strings.Contains(b.label, "c-m") {
			c = palette[0]
		}
		ch.Color = c
		ch.LineStyle.Width = 0
		p.Add(ch)
		errs, err := plotter.NewYErrorBars(whisker{x: float64(i), f: b.f})
		if err == nil {
			p.Add(errs)
		}
		lbl := b.label
		if b.f.LowerBound {
			lbl = ">" + lbl
		}
		names = append(names, fmt.Sprintf("%s\n%.3g", lbl, b.f.Median))
		i++
		if b.f.Max > p.Y.Max {
			p.Y.Max = b.f.Max
		}
	}
	if goal > 0 {
		line, err := plotter.NewLine(plotter.XYs{{X: -0.5, Y: goal}, {X: float64(i) - 0.5, Y: goal}})
		if err == nil {
			line.Color = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
			line.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
			p.Add(line)
		}
		if goal > p.Y.Max {
			p.Y.Max = goal
		}
	}
	p.Y.Max *= 1.1
	p.NominalX(names...)
	p.Add(plotter.NewGrid())
	return p
}

// whisker is a one-point YErrorer: the min-max spread around a median.
type whisker struct {
	x float64
	f *figure
}

func (w whisker) Len() int                      { return 1 }
func (w whisker) XY(int) (float64, float64)     { return w.x, w.f.Median }
func (w whisker) YError(int) (float64, float64) { return w.f.Median - w.f.Min, w.f.Max - w.f.Median }

/*
 * svg.h: a small line-plot writer (SVG 1.1, no dependencies), used for the
 * training loss curve and the test-time scaling curve (accuracy against mean
 * thinking tokens).
 *
 *   SvgSeries s = {"Wait x0..x4", xs, ys, n, labels};
 *   svg_line_plot_file("out/demo/scaling.svg", "Test-time scaling",
 *                      "mean thinking tokens", "accuracy (%)", &s, 1);
 *
 * Axes get "nice" ticks (1, 2 or 5 times a power of ten), each series its own
 * colour, markers at the points (with an optional text label each) and a
 * legend. The file is written atomically (common/util.h). Plain C, compiles
 * as C11 and as C++17.
 */
#ifndef S1C_SVG_H
#define S1C_SVG_H

#include <math.h>
#include <stdio.h>

#include "common/util.h"

typedef struct {
    const char *name;           // legend text (may be NULL)
    const double *x, *y;        // n points, drawn in this order
    size_t n;
    const char *const *labels;  // optional text beside each point (NULL, or n strings, entries may be NULL)
} SvgSeries;

// XML-escapes s into fp
static inline void svg_text(FILE *fp, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", fp); break;
        case '>': fputs("&gt;", fp); break;
        case '&': fputs("&amp;", fp); break;
        case '"': fputs("&quot;", fp); break;
        default: fputc(*s, fp);
        }
    }
}

// a tick step of 1, 2 or 5 times a power of ten giving about target ticks over span
static inline double svg_nice_step(double span, int target) {
    double raw = span / (double)target;
    double p = pow(10.0, floor(log10(raw)));
    double m = raw / p;
    return (m < 1.5 ? 1.0 : m < 3.5 ? 2.0 : m < 7.5 ? 5.0 : 10.0) * p;
}

static inline void svg_axis_range(double lo, double hi, double *out_lo, double *out_hi, double *step) {
    if (!(hi > lo)) { lo -= 1.0; hi += 1.0; }
    *step = svg_nice_step(hi - lo, 5);
    *out_lo = floor(lo / *step) * *step;
    *out_hi = ceil(hi / *step) * *step;
}

static inline void svg_line_plot(FILE *fp, const char *title, const char *xlabel, const char *ylabel,
                                 const SvgSeries *series, size_t n_series) {
    static const char *colours[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"};
    const double W = 640, H = 420, left = 70, right = 20, top = 40, bottom = 60;
    const double pw = W - left - right, ph = H - top - bottom;
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (size_t s = 0; s < n_series; s++)
        for (size_t i = 0; i < series[s].n; i++) {
            double x = series[s].x[i], y = series[s].y[i];
            if (!isfinite(x) || !isfinite(y)) continue;
            xmin = fmin(xmin, x); xmax = fmax(xmax, x);
            ymin = fmin(ymin, y); ymax = fmax(ymax, y);
        }
    if (!isfinite(xmin)) { xmin = 0; xmax = 1; ymin = 0; ymax = 1; }
    double x0, x1, xs, y0, y1, ys;
    svg_axis_range(xmin, xmax, &x0, &x1, &xs);
    svg_axis_range(ymin, ymax, &y0, &y1, &ys);
#define SVG_PX(x) (left + ((x) - x0) / (x1 - x0) * pw)
#define SVG_PY(y) (top + ph - ((y) - y0) / (y1 - y0) * ph)
    fprintf(fp, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
                "font-family=\"sans-serif\" font-size=\"12\">\n", W, H, W, H);
    fprintf(fp, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(fp, "<text x=\"%.1f\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">", W / 2);
    svg_text(fp, title);
    fprintf(fp, "</text>\n");
    // grid and ticks
    for (double v = x0; v <= x1 + xs * 1e-9; v += xs) {
        fprintf(fp, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", SVG_PX(v), top, SVG_PX(v), top + ph);
        fprintf(fp, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n", SVG_PX(v), top + ph + 16, fabs(v) < xs * 1e-9 ? 0.0 : v);
    }
    for (double v = y0; v <= y1 + ys * 1e-9; v += ys) {
        fprintf(fp, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", left, SVG_PY(v), left + pw, SVG_PY(v));
        fprintf(fp, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", left - 6, SVG_PY(v) + 4, fabs(v) < ys * 1e-9 ? 0.0 : v);
    }
    fprintf(fp, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"black\"/>\n", left, top, pw, ph);
    fprintf(fp, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", left + pw / 2, H - 18);
    svg_text(fp, xlabel);
    fprintf(fp, "</text>\n<text transform=\"translate(18,%.1f) rotate(-90)\" text-anchor=\"middle\">", top + ph / 2);
    svg_text(fp, ylabel);
    fprintf(fp, "</text>\n");
    // series
    for (size_t s = 0; s < n_series; s++) {
        const char *colour = colours[s % (sizeof colours / sizeof colours[0])];
        const SvgSeries *sr = &series[s];
        fprintf(fp, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", colour);
        for (size_t i = 0; i < sr->n; i++)
            if (isfinite(sr->x[i]) && isfinite(sr->y[i])) fprintf(fp, "%.1f,%.1f ", SVG_PX(sr->x[i]), SVG_PY(sr->y[i]));
        fprintf(fp, "\"/>\n");
        for (size_t i = 0; i < sr->n && sr->n <= 64; i++) {   // markers only where they stay readable
            if (!isfinite(sr->x[i]) || !isfinite(sr->y[i])) continue;
            fprintf(fp, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>\n", SVG_PX(sr->x[i]), SVG_PY(sr->y[i]), colour);
            if (sr->labels && sr->labels[i]) {
                fprintf(fp, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" fill=\"%s\">", SVG_PX(sr->x[i]) + 5, SVG_PY(sr->y[i]) - 6, colour);
                svg_text(fp, sr->labels[i]);
                fprintf(fp, "</text>\n");
            }
        }
        if (sr->name) {
            double ly = top + 14 + 16 * (double)s;
            fprintf(fp, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"/>\n",
                    left + pw - 150, ly - 4, left + pw - 130, ly - 4, colour);
            fprintf(fp, "<text x=\"%.1f\" y=\"%.1f\">", left + pw - 125, ly);
            svg_text(fp, sr->name);
            fprintf(fp, "</text>\n");
        }
    }
#undef SVG_PX
#undef SVG_PY
    fprintf(fp, "</svg>\n");
}

static inline void svg_line_plot_file(const char *path, const char *title, const char *xlabel, const char *ylabel,
                                      const SvgSeries *series, size_t n_series) {
    AtomicFile af = atomic_open(path);
    svg_line_plot(af.fp, title, xlabel, ylabel, series, n_series);
    atomic_commit(&af);
}

#endif // S1C_SVG_H

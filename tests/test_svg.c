// Tests of common/svg.h: the plot file is written, has one marker per point,
// escapes text, maps the data range inside the plot area, and survives
// degenerate input (one point, NaN).
#include "../common/svg.h"
#include "test.h"

static int count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++) n++;
    return n;
}

int main(void) {
    TEST_BEGIN("a two-series plot: markers, legend, escaping, coordinates inside the frame");
    const double x1[] = {100, 250, 400}, y1[] = {20, 45, 60};
    const double x2[] = {150, 300}, y2[] = {30, 50};
    const char *labels[] = {"B=64", "B=128 <&>", NULL};
    SvgSeries s[2] = {{"budget cap", x1, y1, 3, labels}, {"Wait x1..x2", x2, y2, 2, NULL}};
    char path[] = "build/tests/test_svg.tmp.svg";
    svg_line_plot_file(path, "Scaling \"test\"", "mean thinking tokens", "accuracy (%)", s, 2);
    size_t n;
    char *svg = read_file_check(path, &n);
    CHECK(strncmp(svg, "<svg ", 5) == 0 && strstr(svg, "</svg>\n") != NULL, "not an <svg> document");
    CHECK(count(svg, "<circle") == 5, "%d markers, want 5", count(svg, "<circle"));
    CHECK(count(svg, "<polyline") == 2, "want one polyline per series");
    CHECK(strstr(svg, "B=128 &lt;&amp;&gt;") && strstr(svg, "Scaling &quot;test&quot;"), "text not escaped");
    CHECK(strstr(svg, "budget cap") && strstr(svg, "Wait x1..x2"), "legend missing");
    // every marker centre lies inside the plot frame (x 70..620, y 40..360)
    int outside = 0;
    for (const char *p = svg; (p = strstr(p, "<circle cx=\"")) != NULL; p++) {
        double cx, cy;
        if (sscanf(p, "<circle cx=\"%lf\" cy=\"%lf\"", &cx, &cy) != 2 || cx < 70 || cx > 620 || cy < 40 || cy > 360) outside++;
    }
    CHECK(outside == 0, "%d markers outside the frame", outside);
    free(svg);
    remove(path);
    TEST_END();

    TEST_BEGIN("degenerate input: one point and a NaN still give a finite plot");
    const double x[] = {5, NAN}, y[] = {1, 2};
    SvgSeries one = {NULL, x, y, 2, NULL};
    svg_line_plot_file(path, "one", "x", "y", &one, 1);
    char *svg2 = read_file_check(path, &n);
    CHECK(count(svg2, "<circle") == 1 && !strstr(svg2, "nan") && !strstr(svg2, "inf"), "bad degenerate plot");
    free(svg2);
    remove(path);
    TEST_END();
    return test_summary();
}

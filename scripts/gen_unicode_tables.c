/*
 * gen_unicode_tables.c: generates common/unicode_tables.h, the Unicode data
 * that tokenizer.c needs, from the Unicode Character Database.
 *
 *   scripts/gen_unicode_tables.sh            (compiles this file and runs it)
 *   cc -O2 -o gen scripts/gen_unicode_tables.c && ./gen /usr/share/unicode > common/unicode_tables.h
 *
 * Input: UnicodeData.txt, PropList.txt, DerivedAge.txt, CompositionExclusions.txt
 * (Debian: `apt-get install unicode-data`, files under /usr/share/unicode/).
 *
 * Output, per code point, in a two-level table (see the header it writes):
 *   - the pre-tokenizer class: L (letters Lu Ll Lt Lm Lo), N (Nd Nl No),
 *     W (White_Space), O (everything else), from the installed UCD version;
 *   - an "NFC may change this" flag, a canonical combining class, and the
 *     canonical decomposition and composition lists, all restricted to the
 *     characters assigned in Unicode 9.0 (DerivedAge), because Hugging Face
 *     `tokenizers` normalises with Unicode 9.0 data: a mark added later is a
 *     plain starter there.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NCP 0x110000
#define BLOCK 64                // code points per second-level block
#define NFC_MAX_AGE 900         // Unicode 9.0, as major*100 + minor

enum { CLASS_O = 0, CLASS_L = 1, CLASS_N = 2, CLASS_W = 3, FLAG_NFC = 4 };

static unsigned char cls[NCP], ccc[NCP], unsafe_[NCP];
static short age[NCP];          // major*100 + minor, 0 = unassigned
static unsigned decomp1[NCP], decomp2[NCP];  // canonical decomposition (0 = none)
static unsigned char excluded[NCP];
static unsigned char is_second[NCP];

static FILE *open_ucd(const char *dir, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "r");
    if (!fp) { fprintf(stderr, "error: %s: cannot open\n", path); exit(1); }
    return fp;
}

// Parses "XXXX" or "XXXX..YYYY" at the start of a line. Returns 0 on a comment/blank line.
static int parse_range(const char *line, unsigned *lo, unsigned *hi) {
    char *end;
    if (line[0] == '#' || line[0] == '\n' || line[0] == '\0') return 0;
    *lo = (unsigned)strtoul(line, &end, 16);
    *hi = *lo;
    if (end[0] == '.' && end[1] == '.') *hi = (unsigned)strtoul(end + 2, &end, 16);
    return end != line;
}

static void read_unicode_data(const char *dir) {
    FILE *fp = open_ucd(dir, "UnicodeData.txt");
    char line[1024];
    unsigned range_start = 0;
    while (fgets(line, sizeof line, fp)) {
        char *field[15];
        int nf = 0;
        char *p = line;
        field[nf++] = p;
        while (nf < 15 && (p = strchr(p, ';')) != NULL) { *p++ = '\0'; field[nf++] = p; }
        if (nf < 6) continue;
        unsigned cp = (unsigned)strtoul(field[0], NULL, 16);
        const char *gc = field[2];
        int c = CLASS_O;
        if (gc[0] == 'L' && strchr("ultmo", gc[1])) c = CLASS_L;
        else if (gc[0] == 'N' && strchr("dlo", gc[1])) c = CLASS_N;
        unsigned lo = cp;
        if (strstr(field[1], ", First>")) { range_start = cp; continue; }
        if (strstr(field[1], ", Last>")) lo = range_start;
        for (unsigned u = lo; u <= cp; u++) {
            cls[u] = (unsigned char)c;
            ccc[u] = (unsigned char)atoi(field[3]);
        }
        if (field[5][0] != '\0' && field[5][0] != '<') {   // canonical decomposition
            char *end;
            decomp1[cp] = (unsigned)strtoul(field[5], &end, 16);
            decomp2[cp] = (unsigned)strtoul(end, NULL, 16);
        }
    }
    fclose(fp);
}

static void read_white_space(const char *dir) {
    FILE *fp = open_ucd(dir, "PropList.txt");
    char line[1024];
    unsigned lo, hi;
    while (fgets(line, sizeof line, fp))
        if (parse_range(line, &lo, &hi) && strstr(line, "; White_Space"))
            for (unsigned u = lo; u <= hi; u++) cls[u] = CLASS_W;
    fclose(fp);
}

static void read_ages(const char *dir) {
    FILE *fp = open_ucd(dir, "DerivedAge.txt");
    char line[1024];
    unsigned lo, hi;
    while (fgets(line, sizeof line, fp)) {
        if (!parse_range(line, &lo, &hi)) continue;
        char *semi = strchr(line, ';');
        if (!semi) continue;
        int major = 0, minor = 0;
        if (sscanf(semi + 1, " %d.%d", &major, &minor) != 2) continue;
        for (unsigned u = lo; u <= hi; u++) age[u] = (short)(major * 100 + minor);
    }
    fclose(fp);
}

static void read_exclusions(const char *dir) {
    FILE *fp = open_ucd(dir, "CompositionExclusions.txt");
    char line[1024];
    unsigned lo, hi;
    while (fgets(line, sizeof line, fp))
        if (parse_range(line, &lo, &hi))
            for (unsigned u = lo; u <= hi; u++) excluded[u] = 1;
    fclose(fp);
}

// Writes a two-level table: stage1[cp / BLOCK] = block number, stage2 = the blocks.
static void write_table(const char *name, const unsigned char *values) {
    static unsigned short stage1[NCP / BLOCK];
    static unsigned char blocks[NCP];
    int nblocks = 0;
    for (int b = 0; b < NCP / BLOCK; b++) {
        const unsigned char *v = values + b * BLOCK;
        int found = -1;
        for (int k = 0; k < nblocks && found < 0; k++)
            if (memcmp(blocks + k * BLOCK, v, BLOCK) == 0) found = k;
        if (found < 0) { memcpy(blocks + nblocks * BLOCK, v, BLOCK); found = nblocks++; }
        stage1[b] = (unsigned short)found;
    }
    printf("static const uint16_t %s_stage1[%d] = {", name, NCP / BLOCK);
    for (int b = 0; b < NCP / BLOCK; b++) printf("%s%d,", b % 32 ? "" : "\n", stage1[b]);
    printf("\n};\n");
    printf("static const uint8_t %s_stage2[%d] = {", name, nblocks * BLOCK);
    for (int k = 0; k < nblocks * BLOCK; k++) printf("%s%d,", k % 64 ? "" : "\n", blocks[k]);
    printf("\n};\n");
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/usr/share/unicode";
    read_unicode_data(dir);
    read_white_space(dir);
    read_ages(dir);
    read_exclusions(dir);

    // Normalisation data as of Unicode 9.0: later characters are starters with no decomposition.
    for (unsigned u = 0; u < NCP; u++)
        if (age[u] == 0 || age[u] > NFC_MAX_AGE) { ccc[u] = 0; decomp1[u] = decomp2[u] = 0; }
    // Full composition exclusions: the listed ones, singletons, and non-starter decompositions.
    for (unsigned u = 0; u < NCP; u++)
        if (decomp1[u] && (decomp2[u] == 0 || ccc[u] != 0 || ccc[decomp1[u]] != 0)) excluded[u] = 1;
    int ndecomp = 0, ncomp = 0;
    for (unsigned u = 0; u < NCP; u++) {
        if (!decomp1[u]) continue;
        ndecomp++;
        if (!excluded[u]) { ncomp++; is_second[decomp2[u]] = 1; }
    }
    // Jamo V and T compose algorithmically with a preceding L or LV syllable.
    for (unsigned u = 0x1161; u <= 0x1175; u++) is_second[u] = 1;
    for (unsigned u = 0x11A8; u <= 0x11C2; u++) is_second[u] = 1;
    // A character NFC may change (or that may change its neighbour): it reorders, it
    // composes with what precedes it, or it decomposes and does not compose back.
    for (unsigned u = 0; u < NCP; u++) {
        unsafe_[u] = ccc[u] != 0 || is_second[u] || (decomp1[u] && excluded[u]);
        cls[u] = (unsigned char)(cls[u] | (unsafe_[u] ? FLAG_NFC : 0));
    }

    printf("/*\n * unicode_tables.h: GENERATED by scripts/gen_unicode_tables.c from the Unicode\n");
    printf(" * Character Database in %s. Do not edit; regenerate with scripts/gen_unicode_tables.sh.\n", dir);
    printf(" *\n * uni_props_*: two-level table, value = pre-tokenizer class (bits 0-1: 0 other,\n");
    printf(" *   1 letter L*, 2 number N*, 3 White_Space) | 4 if NFC may change the character or\n");
    printf(" *   its neighbour (Unicode 9.0 normalisation data, as Hugging Face tokenizers uses).\n");
    printf(" * uni_ccc_*: canonical combining class (Unicode 9.0; later characters are 0).\n");
    printf(" * uni_decomp: canonical decompositions (Unicode 9.0, Hangul excluded), sorted by code point.\n");
    printf(" * uni_comp: primary composites by (first, second), sorted; excludes full composition exclusions.\n");
    printf(" * lookup: stage2[stage1[cp / %d] * %d + cp %% %d]\n */\n", BLOCK, BLOCK, BLOCK);
    printf("#ifndef S1C_UNICODE_TABLES_H\n#define S1C_UNICODE_TABLES_H\n#include <stdint.h>\n\n");
    printf("#define UNI_BLOCK %d\n", BLOCK);
    printf("#define UNI_CLASS_O 0\n#define UNI_CLASS_L 1\n#define UNI_CLASS_N 2\n#define UNI_CLASS_W 3\n#define UNI_FLAG_NFC 4\n\n");
    write_table("uni_props", cls);
    write_table("uni_ccc", ccc);
    printf("\ntypedef struct { uint32_t cp, first, second; } UniDecomp;\n");
    printf("#define UNI_NDECOMP %d\nstatic const UniDecomp uni_decomp[UNI_NDECOMP] = {\n", ndecomp);
    for (unsigned u = 0; u < NCP; u++)
        if (decomp1[u]) printf("{0x%X,0x%X,0x%X},\n", u, decomp1[u], decomp2[u]);
    printf("};\n\ntypedef struct { uint32_t first, second, composite; } UniComp;\n");
    printf("#define UNI_NCOMP %d\nstatic const UniComp uni_comp[UNI_NCOMP] = {\n", ncomp);
    // sort the pairs by (first, second): collect, then insertion sort (under a thousand entries)
    unsigned (*pairs)[3] = malloc(sizeof(unsigned[3]) * (size_t)ncomp);
    int k = 0;
    for (unsigned u = 0; u < NCP; u++)
        if (decomp1[u] && !excluded[u]) { pairs[k][0] = decomp1[u]; pairs[k][1] = decomp2[u]; pairs[k][2] = u; k++; }
    for (int i = 1; i < ncomp; i++)
        for (int j = i; j > 0 && (pairs[j - 1][0] > pairs[j][0] || (pairs[j - 1][0] == pairs[j][0] && pairs[j - 1][1] > pairs[j][1])); j--) {
            unsigned t[3];
            memcpy(t, pairs[j], sizeof t); memcpy(pairs[j], pairs[j - 1], sizeof t); memcpy(pairs[j - 1], t, sizeof t);
        }
    for (int i = 0; i < ncomp; i++) printf("{0x%X,0x%X,0x%X},\n", pairs[i][0], pairs[i][1], pairs[i][2]);
    printf("};\n\n#endif // S1C_UNICODE_TABLES_H\n");
    free(pairs);
    return 0;
}

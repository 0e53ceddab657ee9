/* Element-wise math over data columns in plain C: arithmetic, comparisons, mask logic, NaN tests,
 * reductions with NaN skipped, and casts between column types (string formatting and parsing). */
#ifndef LURAY_DATA_COLUMN_MATH_H
#define LURAY_DATA_COLUMN_MATH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dcol.h"

typedef enum {
    DCOL_ADD,
    DCOL_SUB,
    DCOL_MUL,
    DCOL_DIV,  /* always float64 */
    DCOL_IDIV, /* floor division, as Lua's // */
    DCOL_MOD,  /* remainder with the divisor's sign, as Lua's % */
    DCOL_POW   /* always float64 */
} dcol_arith_op_t;

typedef enum { DCOL_EQ, DCOL_NE, DCOL_LT, DCOL_LE, DCOL_GT, DCOL_GE } dcol_cmp_op_t;

typedef enum { DCOL_SUM, DCOL_MEAN, DCOL_MIN, DCOL_MAX, DCOL_STD } dcol_reduce_op_t;

/* Lua's symbol of an arithmetic op ("+", "//", ...) and the method name of a comparison ("lt"),
 * for messages. */
const char *dcol_arith_symbol(dcol_arith_op_t op);
const char *dcol_cmp_name(dcol_cmp_op_t op);
const char *dcol_reduce_name(dcol_reduce_op_t op);

typedef enum { DCOL_SCALAR_INT, DCOL_SCALAR_FLOAT, DCOL_SCALAR_STR } dcol_scalar_kind_t;

/* One side of an element-wise op: a column, or (col == NULL) a scalar of the given kind. A string
 * scalar is borrowed. bool columns act as int64 0/1 in arithmetic and comparisons. */
typedef struct {
    const dcol_t *col;
    dcol_scalar_kind_t kind;
    int64_t i;
    double f;
    const char *s;
    size_t len;
} dcol_operand_t;

static inline dcol_operand_t dcol_operand_col(const dcol_t *c)
{
    return (dcol_operand_t){.col = c};
}

static inline dcol_operand_t dcol_operand_int(int64_t v)
{
    return (dcol_operand_t){.kind = DCOL_SCALAR_INT, .i = v};
}

static inline dcol_operand_t dcol_operand_float(double v)
{
    return (dcol_operand_t){.kind = DCOL_SCALAR_FLOAT, .f = v};
}

static inline dcol_operand_t dcol_operand_str(const char *s, size_t len)
{
    return (dcol_operand_t){.kind = DCOL_SCALAR_STR, .s = s, .len = len};
}

/* Every function below that makes a column returns 0 with *out a new owned column, or -1 with a
 * message in err (wrong types, lengths that differ, an int64 division by zero naming its 1-based
 * row, a value that does not convert, or no memory); then *out is left empty. At least one
 * operand of a binary op must be a column; two columns must have equal lengths. */

/* int64 op int64 stays int64 for + - * // % (wrapping on overflow, as Lua integers do); / and ^
 * give float64, as does any float64 operand. */
int dcol_arith(dcol_arith_op_t op, const dcol_operand_t *a, const dcol_operand_t *b, dcol_t *out,
               char *err, size_t errlen);
/* Unary minus: int64 and bool give int64, float64 stays float64. */
int dcol_negate(const dcol_t *a, dcol_t *out, char *err, size_t errlen);
/* A bool column: numbers compare with numbers (integers exactly; with a float64 side, as doubles;
 * NaN is unequal to everything), strings with strings (bytewise, a prefix sorts first). */
int dcol_compare(dcol_cmp_op_t op, const dcol_operand_t *a, const dcol_operand_t *b, dcol_t *out,
                 char *err, size_t errlen);
/* String concatenation row by row; both operands strings (columns or scalars). */
int dcol_str_concat(const dcol_operand_t *a, const dcol_operand_t *b, dcol_t *out, char *err,
                    size_t errlen);

/* Mask logic on bool columns (any nonzero byte counts as true; results are 0/1). */
int dcol_mask_and(const dcol_t *a, const dcol_t *b, dcol_t *out, char *err, size_t errlen);
int dcol_mask_or(const dcol_t *a, const dcol_t *b, dcol_t *out, char *err, size_t errlen);
int dcol_mask_not(const dcol_t *a, dcol_t *out, char *err, size_t errlen);
/* Rows with a nonzero byte; the column must be bool. */
int64_t dcol_mask_count(const dcol_t *m);
/* A bool column, true where a float64 value is NaN (never for int64 and bool). */
int dcol_isnan(const dcol_t *a, dcol_t *out, char *err, size_t errlen);

/* A reduction's value: none (empty, NaN only, or std of fewer than 2 values), an integer or a
 * float. */
typedef struct {
    bool valid;
    bool is_int;
    int64_t i;
    double f;
} dcol_stat_t;

/* Reductions of int64, float64 and bool columns, NaN skipped: sum (int64 and bool: an integer,
 * wrapping as Lua does; of nothing: 0), mean, min and max (integers for int64 and bool), std
 * (sample, ddof 1, two-pass). -1 with err for string and tensor columns. */
int dcol_reduce(dcol_reduce_op_t op, const dcol_t *c, dcol_stat_t *out, char *err, size_t errlen);
/* Row of the bytewise smallest (or largest) value of a string column, the first of equals; -1
 * when the column is empty. */
int64_t dcol_str_extreme(const dcol_t *c, bool largest);

/* Converts between int64, float64, bool and string (the same type: a copy). float64 → int64
 * truncates toward zero, as numpy's astype does, and fails on NaN, inf or a value out of range;
 * numbers → bool are true when nonzero. To string: integers in decimal, floats as Lua prints them
 * but round-trip exact ("1.0", "0.1", "nan", "inf"), bools "true"/"false". From string: the
 * readers' parsers (no surrounding spaces; "" is NaN for float64). Tensor columns only copy. */
int dcol_cast(const dcol_t *src, dcol_type_t to, dcol_t *out, char *err, size_t errlen);
/* The text a float64 casts to; returns its length (buf of at least 32 bytes). */
size_t dcol_format_f64(double v, char *buf, size_t buflen);

#endif

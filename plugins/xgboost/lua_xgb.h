/* The xgboost plugin's Lua types, shared by its binding files: DMatrix ("xgboost.DMatrix"),
 * Booster ("xgboost.Booster") and Tracker ("xgboost.Tracker") userdata, and the openers that add
 * each file's functions to the module table. */
#ifndef LURAY_XGB_LUA_XGB_H
#define LURAY_XGB_LUA_XGB_H

#include <lua.h>
#include <stdint.h>
#include <xgboost/c_api.h>

#include "luray/plugin.h"

#define XGB_DMATRIX_MT "xgboost.DMatrix"
#define XGB_BOOSTER_MT "xgboost.Booster"
#define XGB_TRACKER_MT "xgboost.Tracker"

/* The host API table, set by the plugin's init. */
extern const luray_host_api_t *xgb_host;

/* Raises "<where>: <libxgboost's last error>" (its stack trace left out). Call it only once
 * everything C holds is released. */
int xgb_raise(lua_State *L, const char *where);

/* A DMatrix or Booster userdata owns its handle; NULL once freed. */
typedef struct {
    DMatrixHandle h;
} xgb_dmatrix_t;

typedef struct {
    BoosterHandle h;
} xgb_booster_t;

/* Checkers: raise on a value of another type or on a freed handle. */
xgb_dmatrix_t *xgb_dmatrix_check(lua_State *L, int idx);
xgb_booster_t *xgb_booster_check(lua_State *L, int idx);

/* Pushes a new, empty (h NULL) Booster userdata; its metatable is made on first use, so a
 * Booster can be decoded before the module was opened. */
xgb_booster_t *xgb_booster_push(lua_State *L);

/* Float32 values of a 1-D tensor (or [N, 1]), a numeric data.Column or a Lua list of numbers
 * at idx, in a new malloc'd buffer of *n values. NULL with err set when the value is none of
 * these. Never raises. */
float *xgb_floats_arg(lua_State *L, int idx, const char *what, int64_t *n, char *err,
                      size_t errlen);

/* Pushes a new float32 tensor of ndim dims holding a copy of the values at data. Raises on no
 * memory. */
void xgb_push_float_tensor(lua_State *L, const float *data, int ndim, const int64_t *shape);

/* Openers: each adds its functions to the module table at module_idx and sets up metatables. */
void xgb_dmatrix_open(lua_State *L, int module_idx);
void xgb_booster_open(lua_State *L, int module_idx);
void xgb_collective_open(lua_State *L, int module_idx);

extern const luray_serializer_t xgb_booster_serializer;

#endif
